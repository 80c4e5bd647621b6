"""`python -m launcher_server`: run the launcher daemon in the foreground."""

from launcher_server.daemon import run

if __name__ == "__main__":
    run()
