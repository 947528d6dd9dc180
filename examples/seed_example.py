"""The seed document's example, in PyTorch, done for real.

The seed trains a small Keras MLP (10 → 64 → 32 → 1, ReLU, Adam, MSE) on random data for 100
epochs, then calls prune(model, 0.01), cut(model, 0.01), merge(model) and add_layer(model,
0.01) — four functions that, as written there, do not work. Here each is one netsculpt call on
the user's own model, which stays a working ``nn.Sequential`` after every step.

Run: python examples/seed_example.py
"""

import torch
from torch import nn

import netsculpt as ns

torch.manual_seed(0)
x = torch.rand(100, 10)  # the seed's data: x ∈ R^{100×10}, y ∈ R^{100×1}
y = torch.rand(100, 1)
model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))

opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for _ in range(100):  # the seed's 100 epochs, full batch
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
print(f"trained: mse {loss.item():.4f}")

example = x[:1]
data = [(x, y)]

# 剪枝 prune: zero every weight with |w| < 0.01, then remove the neurons left without weights
report = ns.prune(model, example, threshold=0.01)
print(report)

# 剪切 cut: remove every layer whose effect on the prediction is below 0.01
report = ns.cut(model, example, data=data, threshold=0.01)
print(report)

# 增加层 grow: insert an identity layer where the effect is above 0.01 (outputs unchanged)
report = ns.grow(model, example, data=data, threshold=0.01)
print(report)

# 合并 merge: merge neurons whose weights are (near) duplicates, and fold what folds exactly
report = ns.merge(model, example, neurons=True, threshold=0.01)
print(report)

print(model)
print(f"final: mse {nn.functional.mse_loss(model(x), y).item():.4f}")
