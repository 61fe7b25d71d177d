"""Train the small DenseNet-BC of the INT8 accuracy tests on scikit-learn's digits.

    python examples/digits/train.py --output tests/data/digits_densenet_bc40_k12.pth

The preset is densenet_bc40_k12 (DenseNet-BC, L=40, k=12) with one input channel; 30 epochs
took 13.5 minutes on two CPU cores shared with other work. The checkpoint is saved in float16
to stay small; the model it defines is what the tests quantize and compare against.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import load_split  # noqa: E402

from densenet_trt import create_model  # noqa: E402

MODEL = "densenet_bc40_k12"


def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(torch.from_numpy(images[i:i + 200])).argmax(1)
                               for i in range(0, len(images), 200)])
    return float((predicted.numpy() == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="checkpoint to write (.pth)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("test")
    model = create_model(MODEL, num_classes=10, in_channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    steps = args.epochs * ((len(train_x) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=steps)
    x_all, y_all = torch.from_numpy(train_x), torch.from_numpy(train_y)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_all))
        for i in range(0, len(order), 64):
            index = order[i:i + 64]
            # Shifts of up to 2 pixels: the digits are not all centred alike.
            dx, dy = torch.randint(-2, 3, (2,)).tolist()
            x = torch.roll(x_all[index], shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(x), y_all[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test top-1 {accuracy(model, test_x, test_y):.2%}", flush=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(state, args.output)
    reloaded = create_model(MODEL, weights=args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB); "
          f"test top-1 of the saved float16 weights: {accuracy(reloaded, test_x, test_y):.2%}")


if __name__ == "__main__":
    main()
