"""The loss-curve PNG shown when training ends (matplotlib, imported on first use)."""
from __future__ import annotations

import io


def loss_curve_png(losses: list[list[float]], title: str, val_losses: list[list[float]] | None = None) -> bytes:
    """losses: [step, loss, average loss] rows, as the worker reports them; val_losses:
    [step, loss on the held-out posts] rows, drawn next to them."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    if losses:
        steps = [row[0] for row in losses]
        ax.plot(steps, [row[1] for row in losses], lw=0.8, alpha=0.5, label="loss")
        ax.plot(steps, [row[2] for row in losses], lw=1.8, label="average loss")
        if val_losses:
            ax.plot([r[0] for r in val_losses], [r[1] for r in val_losses], "o-", lw=1.5, ms=3,
                    label="validation loss")
        ax.legend(loc="upper right")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
