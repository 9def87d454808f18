"""Shared helpers of the Python tests."""
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "fixtures" / "golden" / "optim"
ZOO = ROOT / "fixtures" / "zoo"


def assert_close(actual, expected, what):
    """The golden tolerance of the Rust replay: |a − r| ≤ 1e-5·|r| + 1e-6·max|r|."""
    actual = torch.as_tensor(actual, dtype=torch.float64).reshape(-1)
    expected = torch.as_tensor(expected, dtype=torch.float64).reshape(-1)
    scale = expected.abs().max().item() if expected.numel() else 0.0
    err = (actual - expected).abs()
    bound = 1e-5 * expected.abs() + 1e-6 * scale
    worst = (err - bound).argmax().item() if err.numel() else 0
    assert bool((err <= bound).all()), (
        f"{what}: element {worst}: {actual[worst].item()!r} vs {expected[worst].item()!r} "
        f"(max error {err.max().item():.3g}, scale {scale:.3g})"
    )


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def free_port():
    """A free TCP port on the loopback interface for a process group."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

