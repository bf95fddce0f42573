"""`python -m dxflow_server`: the same as `dxflow boot up` in the foreground."""

from dxflow._cli import main

if __name__ == "__main__":
    main(["boot", "up", *__import__("sys").argv[1:]])
