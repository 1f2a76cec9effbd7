"""``python -m lwstack --version``: version and build."""
import argparse
import sys

import lwstack


def main(argv=None):
    """Print the version and whether the Cython-accelerated build is active."""
    parser = argparse.ArgumentParser(prog="python -m lwstack",
                                     description="lwstack: the Internet of Threads for Python")
    parser.add_argument("--version", action="store_true", help="print version and build")
    args = parser.parse_args(argv)
    if args.version:
        build = "accelerated (Cython)" if lwstack.accelerated else "pure Python"
        print(f"lwstack {lwstack.__version__}, {build}, Python {sys.version.split()[0]}")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
