
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # 2-core CI machines: keep each test on one core, as the trainer does.
    torch.set_num_threads(1)
