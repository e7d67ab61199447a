"""What every benchmark does with its result: print the Markdown section, and append it to the
file named by ``--out`` (BENCHMARKS.md) when there is one."""

from __future__ import annotations


def publish(lines: list[str], out: str | None) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        with open(out, "a") as fh:
            fh.write("\n" + text)
