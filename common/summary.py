"""The --summary table: one row per module of the network, then the parameter count.

Each twin lists its own layers (scratch from its parameter arrays and Arch, torchimpl from the
modules of MLP.net) as rows; this module formats them, so equal rows print equal text. The
names are torch's state_dict prefixes (net.0, net.1, ...) on both sides.
"""


def format_summary(rows, buffers=0):
    """rows: [(name, kind, output width, trainable parameters)]; buffers: batch norm's running
    statistics (counted apart: they are state, not trained)."""
    header = ("layer", "type", "output", "params")
    body = [(name, kind, f"(N, {width})", f"{count:,}") for name, kind, width, count in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]
    lines = ["  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                        r[3].rjust(widths[3])]).rstrip() for r in [header, *body]]
    rule = "-" * len(lines[0])
    total = sum(count for *_, count in rows)
    tail = [f"total: {total:,} trainable parameters"]
    if buffers:
        tail.append(f"plus {buffers:,} batch norm running statistics (buffers, not trained)")
    return "\n".join([lines[0], rule, *lines[1:], rule, *tail])
