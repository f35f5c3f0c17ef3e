# `python -m bot`, as DESIGN.md names it: the same command line as `parodybot`.
# The launcher lives in app/; nothing imports this entry point.
from app.cli import main

if __name__ == "__main__":
    main()
