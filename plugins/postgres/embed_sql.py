#!/usr/bin/env python3
"""embed_sql.py INPUT.sql OUTPUT.c SYMBOL - a SQL file as a C char array.

An array initializer rather than a string literal: ISO C compilers need
only support string literals of 4095 bytes (-Woverlength-strings).
"""
import sys


def main() -> int:
    src, dst, sym = sys.argv[1], sys.argv[2], sys.argv[3]
    data = open(src, "rb").read()
    lines = [
        "/* Generated from %s by embed_sql.py: do not edit. */" % src.split("/")[-1],
        "extern const char %s[];" % sym,
        "const char %s[] = {" % sym,
    ]
    for i in range(0, len(data), 16):
        lines.append("  " + ", ".join("0x%02x" % b for b in data[i:i + 16]) + ",")
    lines.append("  0x00};")
    with open(dst, "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
