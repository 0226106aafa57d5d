"""The worker baseline's job."""


def noop(n: int) -> int:
    return n
