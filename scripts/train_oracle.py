"""Train the toy-world oracle (asyrp_lib.toy.oracle) from a seed and write data/oracle.safetensors + oracle.json.

Every step renders fresh faces (half of them with a uniform smile in [-1, 1], so the smile regression
sees every value), lightly augments them, and corrupts a third of a batch into non-faces for the face
head. At the end it measures, on 1,000 fresh renders from a held-out seed, the accuracy of every
attribute (smile as the 3-way label with thresholds +-0.33, plus its MAE) and the face head on clean,
lightly augmented and corrupted images, and prints them as JSON.

    python scripts/train_oracle.py --steps 1000 --device cpu
"""
from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asyrp_lib.toy import toyworld as tw  # noqa: E402
from asyrp_lib.toy.oracle import CONFIG_FILE, WEIGHTS_FILE, Oracle, OracleNet  # noqa: E402

EVAL_SEED = 900_001  # never used for training (training seeds are seed * 1_000_003 + step)


# ----------------------------------------------------------------------------------------------
# Negatives for the face head

CORRUPTIONS = ("noise", "smooth_noise", "noised", "mush", "scramble", "blend", "channels", "half")


def corrupt(images: torch.Tensor, generator: torch.Generator, kinds=CORRUPTIONS) -> torch.Tensor:
    """Turn each face into a non-face, choosing one of ``kinds`` at random per image."""
    n, c, h, w = images.shape
    g = generator
    choice = torch.randint(len(kinds), (n,), generator=g)
    out = images.clone()
    for j, kind in enumerate(kinds):
        idx = (choice == j).nonzero().flatten()
        if idx.numel() == 0:
            continue
        x = images[idx]
        m = idx.numel()
        if kind == "noise":
            x = torch.randn(x.shape, generator=g) * (0.3 + 0.7 * torch.rand(m, 1, 1, 1, generator=g))
        elif kind == "smooth_noise":
            cells = int(torch.randint(2, 17, (1,), generator=g))
            x = torch.randn(m, c, cells, cells, generator=g) * 0.7
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        elif kind == "noised":  # x_t with alpha in [0.03, 0.35]: the face is mostly gone
            a = (0.03 + 0.32 * torch.rand(m, 1, 1, 1, generator=g))
            x = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=g)
        elif kind == "mush":
            x = tw.gaussian_blur(x, 3.5 + 4.0 * torch.rand(m, generator=g))
        elif kind == "scramble":
            p = int((4, 8, 16)[int(torch.randint(3, (1,), generator=g))])
            k = h // p
            x = x.reshape(m, c, k, p, k, p).permute(0, 2, 4, 1, 3, 5).reshape(m, k * k, c, p, p)
            x = x[:, torch.randperm(k * k, generator=g)]
            x = x.reshape(m, k, k, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(m, c, h, w)
        elif kind == "blend":
            lam = 0.35 + 0.3 * torch.rand(m, 1, 1, 1, generator=g)
            shift = (int(torch.randint(-12, 13, (1,), generator=g)), int(torch.randint(-12, 13, (1,), generator=g)))
            other = torch.roll(x.flip(0), shifts=shift, dims=(2, 3))
            x = lam * x + (1 - lam) * other
        elif kind == "channels":
            r = int(torch.randint(3, (1,), generator=g))
            if r == 0:
                x = -x  # negative image
            elif r == 1:
                x = x[:, torch.tensor([2, 0, 1])]
                x = x.clone()
                x[:, int(torch.randint(3, (1,), generator=g))] = torch.rand(1, generator=g) * 2 - 1
            else:
                x = x.clone()
                x[:, int(torch.randint(3, (1,), generator=g))] *= -1
        elif kind == "half":  # half the image replaced by noise or by another face's half
            x = x.clone()
            other = torch.randn(x.shape, generator=g) * 0.6 if torch.rand(1, generator=g) < 0.5 else x.flip(0)
            if torch.rand(1, generator=g) < 0.5:
                x[:, :, h // 2:] = other[:, :, :h - h // 2]
            else:
                x[:, :, :, w // 2:] = torch.roll(other, w // 4, dims=3)[:, :, :, w // 2:]
        out[idx] = x.clamp(-1, 1)
    return out


def augment_light(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small imperfections a good generated face may have: slight blur, noise, contrast and colour shifts."""
    g = generator
    n = images.shape[0]
    sigma = torch.where(torch.rand(n, generator=g) < 0.5, 0.9 * torch.rand(n, generator=g), torch.zeros(n))
    x = tw.gaussian_blur(images, sigma)
    x = x + torch.randn(x.shape, generator=g) * (0.06 * torch.rand(n, 1, 1, 1, generator=g))
    x = x * (1 + 0.08 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)) + 0.06 * (torch.rand(n, 3, 1, 1, generator=g) - 0.5)
    return x.clamp(-1, 1)


def labels(attrs: list[dict]) -> dict[str, torch.Tensor]:
    out = {"smile": torch.tensor([a["smile"] for a in attrs], dtype=torch.float32)}
    for k in tw.CATEGORICAL:
        out[k] = torch.tensor([tw.ATTRIBUTES[k].index(a[k]) for a in attrs])
    out["has_hair"] = torch.tensor([a["hair"] != "none" for a in attrs])
    return out


def training_attrs(n: int, seed: int) -> list[dict]:
    attrs = tw.sample_attributes(n, seed)
    rng = random.Random(seed)
    for a in attrs:
        if rng.random() < 0.5:
            a["smile"] = round(rng.uniform(-1.0, 1.0), 4)
    return attrs


def evaluate(oracle: Oracle, n: int = 1000, seed: int = EVAL_SEED) -> dict:
    attrs = tw.sample_attributes(n, seed)
    images = tw.render(attrs)
    g = torch.Generator().manual_seed(seed)
    pred = oracle.predict(images)
    res = {"n": n, "eval_seed": seed}
    res["smile_acc"] = sum(tw.smile_label(p["smile"]) == tw.smile_label(a["smile"]) for p, a in zip(pred, attrs)) / n
    res["smile_mae"] = sum(abs(p["smile"] - a["smile"]) for p, a in zip(pred, attrs)) / n
    for k in tw.CATEGORICAL:
        pairs = [(p, a) for p, a in zip(pred, attrs) if k != "hair_color" or a["hair"] != "none"]
        res[f"{k}_acc"] = sum(p[k] == a[k] for p, a in pairs) / len(pairs)
    res["face_clean_min"] = min(p["face"] for p in pred)
    res["face_clean_acc"] = sum(p["face"] > 0.5 for p in pred) / n
    aug = oracle.predict(augment_light(images, g))
    res["smile_acc_light_aug"] = sum(tw.smile_label(p["smile"]) == tw.smile_label(a["smile"])
                                     for p, a in zip(aug, attrs)) / n
    res["face_light_aug_acc"] = sum(p["face"] > 0.5 for p in aug) / n
    neg = oracle.scores(corrupt(images, g))["face"]
    res["face_corrupted_acc"] = float((neg < 0.5).float().mean())
    res["face_pure_noise_max"] = float(oracle.scores(torch.randn(200, 3, 64, 64, generator=g).clamp(-1, 1))["face"].max())
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64, help="faces per step (plus batch/2 non-faces)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data"))
    ap.add_argument("--eval-n", type=int, default=1000)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    net = OracleNet().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    warm = min(200, args.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warm)) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    g = torch.Generator().manual_seed(args.seed)
    n_neg = args.batch // 2
    t0 = time.time()
    bar = tqdm(range(args.steps), desc="oracle")
    for step in bar:
        net.train()
        attrs = training_attrs(args.batch + n_neg, args.seed * 1_000_003 + step)
        images = tw.render(attrs)
        pos = augment_light(images[:args.batch], g)
        neg = corrupt(images[args.batch:], g)
        if step % 2 == 0:  # non-faces sometimes also get the light augmentation
            neg = augment_light(neg, g)
        x = torch.cat([pos, neg]).to(device)
        lab = {k: v[:args.batch].to(device) for k, v in labels(attrs).items()}
        out = net(x)
        loss = 4.0 * F.smooth_l1_loss(out["smile"][:args.batch], lab["smile"], beta=0.1)
        for k in tw.CATEGORICAL:
            ce = F.cross_entropy(out[k][:args.batch], lab[k], reduction="none")
            if k == "hair_color":
                ce = ce * lab["has_hair"]
            loss = loss + ce.mean()
        face_target = torch.cat([torch.ones(args.batch), torch.zeros(n_neg)]).to(device)
        loss = loss + F.binary_cross_entropy_with_logits(out["face"], face_target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    wall = time.time() - t0
    net.eval()
    metrics = evaluate(Oracle(net, device), args.eval_n)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    save_file(state, str(out_dir / WEIGHTS_FILE))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        commit = "unknown"
    info = {**net.config, "heads": {k: list(tw.ATTRIBUTES.get(k, ())) for k in ("smile", *tw.CATEGORICAL)},
            "training": {"steps": args.steps, "batch_faces": args.batch, "batch_non_faces": n_neg, "lr": args.lr,
                         "seed": args.seed, "device": str(device), "threads": args.threads,
                         "wall_s": round(wall, 1), "commit": commit},
            "metrics": metrics}
    (out_dir / CONFIG_FILE).write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
