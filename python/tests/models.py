"""Small models for the tests (no weights are downloaded)."""
import torch
from torch import nn


class ConvBN(nn.Module):
    """Conv–BatchNorm–ReLU twice, a pooled linear head: conv weights are channel-wise invariant."""

    def __init__(self, classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)  # a bias before BatchNorm gets noise for a gradient
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


class MixedAxes(nn.Module):
    """A raw ``[in, out]`` weight before BatchNorm1d (channel along axis 1), a
    Linear before LayerNorm (joint weight and bias), and a Linear head."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(12, 10) * 0.3)
        self.bn = nn.BatchNorm1d(10)
        self.lin = nn.Linear(10, 8)
        self.ln = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.bn(x @ self.w))
        return self.head(torch.relu(self.ln(self.lin(x))))


class Tied(nn.Module):
    """An embedding whose weight is also the output projection (tied weights)."""

    def __init__(self, vocab=20, dim=8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        return self.out(self.norm(self.embed(ids)))


class WeightNormed(nn.Module):
    """Conv layers under the weight_norm parametrization (original0 = g, original1 = v)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 6, 3))
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def batch(seed, n=6, classes=5, shape=(3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), torch.randint(0, classes, (n,), generator=g)


class TiedHeadFirst(nn.Module):
    """Tied weights whose first name in named_parameters() is the output head's."""

    def __init__(self, vocab=20, dim=8):
        super().__init__()
        self.out = nn.Linear(dim, vocab, bias=False)
        self.embed = nn.Embedding(vocab, dim)
        self.embed.weight = self.out.weight
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids):
        return self.out(self.norm(self.embed(ids)))
