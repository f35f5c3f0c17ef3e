"""The launcher: the `parodybot` command line, the process runner (`run`,
`bot`, `worker`) and the offline demo. It sits on top: it may import `bot`,
`workers` and `core`; nothing imports it."""
