"""Train the toy CLIP (a small transformers.CLIPModel) on toy-world renders and captions; write data/toy_clip/.

Contrastive training (symmetric InfoNCE, learnable logit scale; identical captions in a batch count as
positives of each other) on fresh renders every step, in batches that hold hard-negative triples (faces
that differ only in the smile, glasses, eyes or hair). A pure contrastive objective learns the colours
fast but the mouth shape slowly, so an auxiliary loss helps within a CPU budget: linear probes on the
projected image embedding predict the renderer's ground truth (smile label and every categorical
attribute); the probes are discarded after training and are not part of the saved model. Augmentations keep the model reading the
blurry predicted-x0 previews a diffusion model shows at large t: Gaussian blur up to strong, down- then
up-scaling, additive noise, x_t = sqrt(a) x + sqrt(1 - a) eps for moderate a, and mild colour jitter.
Images follow the course's CLIP convention: [-1, 1] -> [0, 1] -> OpenAI CLIP mean/std at image_size.

At the end it saves the model (fp16 when the fp16 copy measures as well as fp32), the tokenizer and a
CLIPImageProcessor config, then measures zero-shot accuracy and the directional CLIP similarity on
fresh renders from a held-out seed and prints them as JSON.

    python scripts/train_toy_clip.py --steps 1100 --device cpu
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
from asyrp_lib.models.tokenizer_build import build_tokenizer  # noqa: E402

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
EVAL_SEED = 800_001  # never used for training
PROMPT_TEMPLATES = {"smile": "a {} face", "hair_color": "a face with {} hair", "glasses": ("a face without glasses",
                                                                                          "a face with glasses")}


def to_clip_input(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """[-1, 1] images -> CLIP pixel values (bilinear antialiased resize, OpenAI mean/std)."""
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", antialias=True,
                               align_corners=False)
    x = (images + 1) / 2
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def features(out) -> torch.Tensor:
    """get_*_features returns a tensor in transformers 4.x and may return an output object in 5.x."""
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output if getattr(out, "pooler_output", None) is not None else out[0]


_MENTIONS = {"smile": ("smil", "happy", "grin", "cheer", "frown", "sad", "unhappy", "grump", "neutral", "serious",
                        "expressionless", "calm", "straight"),
             "glasses": ("glasses", "spectacles"), "eyes": ("eyes",), "hair": ("hair", "bald")}


def _caption_mentioning(a: dict, key: str, rng: random.Random) -> str:
    for _ in range(30):
        c = tw.caption(a, rng)
        if any(w in c for w in _MENTIONS[key]):
            return c
    return c


def training_batch(n: int, seed: int, groups: int) -> tuple[list[dict], list[str]]:
    """``groups`` triples of one face and two variants that differ in one fine attribute (a smile label,
    glasses, eyes, hair length), each captioned so that the difference is named; then random faces.

    The triples are hard negatives: colour alone cannot tell them apart, so the model must read the mouth,
    the eyes and the glasses, which plain random batches teach only slowly.
    """
    rng = random.Random(seed)
    base = tw.sample_attributes(n, seed)
    attrs, caps = [], []
    bands = {"frowning": (-1.0, -0.45), "neutral": (-0.2, 0.2), "smiling": (0.45, 1.0)}
    for a in base[:groups]:
        key = rng.choice(("smile", "smile", "glasses", "eyes", "hair"))
        variants = [a]
        if key == "smile":
            labels = [lab for lab in tw.SMILE_LABELS if lab != tw.smile_label(a["smile"])]
            variants += [dict(a, smile=round(rng.uniform(*bands[lab]), 4)) for lab in labels]
        else:
            others = [v for v in tw.ATTRIBUTES[key] if v != a[key]]
            other_key = rng.choice(("smile", "glasses", "eyes"))
            b = dict(a, **{key: rng.choice(others)})
            c = dict(a, **({"smile": -a["smile"]} if other_key == "smile" else
                           {other_key: next(v for v in tw.ATTRIBUTES[other_key] if v != a[other_key])}))
            variants += [b, c]
        for v in variants:
            attrs.append(v)
            caps.append(_caption_mentioning(v, key, rng))
    for a in base[groups:n - 2 * groups]:
        attrs.append(a)
        caps.append(tw.caption(a, rng))
    return attrs, caps


def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per image one of: clean, blur (sigma 0.5-4.5 px), down-up-scale, noise, x_t noising; then mild jitter."""
    n, _, h, w = images.shape
    kind = torch.multinomial(torch.tensor([0.4, 0.25, 0.15, 0.05, 0.15]), n, replacement=True, generator=g)
    out = images.clone()
    idx = (kind == 1).nonzero().flatten()
    if idx.numel():
        out[idx] = tw.gaussian_blur(images[idx], 0.5 + 4.0 * torch.rand(idx.numel(), generator=g) ** 1.3)
    idx = (kind == 2).nonzero().flatten()
    if idx.numel():
        s = int(torch.randint(10, 33, (1,), generator=g))
        small = F.interpolate(images[idx], size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        out[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    idx = (kind == 3).nonzero().flatten()
    if idx.numel():
        out[idx] = images[idx] + 0.25 * torch.rand(idx.numel(), 1, 1, 1, generator=g) * torch.randn(
            images[idx].shape, generator=g)
    idx = (kind == 4).nonzero().flatten()
    if idx.numel():
        a = 0.4 + 0.55 * torch.rand(idx.numel(), 1, 1, 1, generator=g)
        out[idx] = a.sqrt() * images[idx] + (1 - a).sqrt() * torch.randn(images[idx].shape, generator=g)
    contrast = 1 + 0.2 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
    shift = 0.1 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5) + 0.04 * (torch.rand(n, 3, 1, 1, generator=g) - 0.5)
    return (out * contrast + shift).clamp(-1, 1)


def build_model(vocab_size: int, tok, args):
    from transformers import CLIPConfig, CLIPModel
    text = dict(vocab_size=vocab_size, hidden_size=args.width, intermediate_size=4 * args.width,
                num_hidden_layers=args.text_layers, num_attention_heads=args.width // 64,
                max_position_embeddings=32, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    vision = dict(image_size=args.image_size, patch_size=args.patch, hidden_size=args.width,
                  intermediate_size=4 * args.width, num_hidden_layers=args.vision_layers,
                  num_attention_heads=args.width // 64)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=args.proj,
                     logit_scale_init_value=math.log(20.0))
    return CLIPModel(cfg)


class Encoder:
    """Unit-norm image/text embeddings from a CLIPModel + tokenizer (the course's convention)."""

    def __init__(self, model, tok, device):
        self.model, self.tok, self.device = model, tok, device
        self.size = model.config.vision_config.image_size

    def text(self, prompts):
        t = self.tok(list(prompts), padding=True, truncation=True, max_length=32, return_tensors="pt").to(self.device)
        return F.normalize(features(self.model.get_text_features(input_ids=t.input_ids,
                                                                 attention_mask=t.attention_mask)), dim=-1)

    def image(self, images):
        px = to_clip_input(images.to(self.device), self.size)
        return F.normalize(features(self.model.get_image_features(pixel_values=px)), dim=-1)


@torch.no_grad()
def evaluate(enc: Encoder, n: int = 600, seed: int = EVAL_SEED, blur_sigma: float = 3.0) -> dict:
    enc.model.eval()
    attrs = tw.sample_attributes(n, seed)
    images = tw.render(attrs)
    res = {"n": n, "eval_seed": seed}
    img = torch.cat([enc.image(images[i:i + 200]) for i in range(0, n, 200)]).cpu()
    img_blur = torch.cat([enc.image(tw.gaussian_blur(images[i:i + 200], blur_sigma)) for i in range(0, n, 200)]).cpu()
    sf = [i for i, a in enumerate(attrs) if tw.smile_label(a["smile"]) != "neutral"]
    t = enc.text(["a frowning face", "a smiling face"]).cpu()
    truth = torch.tensor([tw.smile_label(attrs[i]["smile"]) == "smiling" for i in sf]).long()
    res["smiling_vs_frowning"] = float(((img[sf] @ t.T).argmax(1) == truth).float().mean())
    res[f"smiling_vs_frowning_blur{blur_sigma:g}"] = float(((img_blur[sf] @ t.T).argmax(1) == truth).float().mean())
    hc = [i for i, a in enumerate(attrs) if a["hair"] != "none"]
    colours = tw.ATTRIBUTES["hair_color"]
    t = enc.text([f"a face with {c} hair" for c in colours]).cpu()
    truth = torch.tensor([colours.index(attrs[i]["hair_color"]) for i in hc])
    res["hair_color"] = float(((img[hc] @ t.T).argmax(1) == truth).float().mean())
    t = enc.text(["a face without glasses", "a face with glasses"]).cpu()
    truth = torch.tensor([a["glasses"] == "yes" for a in attrs]).long()
    res["glasses"] = float(((img @ t.T).argmax(1) == truth).float().mean())
    t = enc.text(["a face with open eyes", "a face with closed eyes"]).cpu()
    truth = torch.tensor([a["eyes"] == "closed" for a in attrs]).long()
    res["eyes"] = float(((img @ t.T).argmax(1) == truth).float().mean())
    # directional similarity: neutral face -> the same face smiling, against "face" -> "smiling face"
    neutral = [dict(a, smile=0.0) for a in attrs[:200]]
    smiling = [dict(a, smile=0.8) for a in attrs[:200]]
    d_img = F.normalize(enc.image(tw.render(smiling)) - enc.image(tw.render(neutral)), dim=-1).cpu()
    tt = enc.text(["face", "smiling face"]).cpu()
    d_txt = F.normalize(tt[1] - tt[0], dim=-1)
    res["directional_neutral_to_smiling"] = float((d_img @ d_txt).mean())
    frowning = [dict(a, smile=-0.8) for a in attrs[:200]]
    d_img2 = F.normalize(enc.image(tw.render(frowning)) - enc.image(tw.render(neutral)), dim=-1).cpu()
    res["directional_neutral_to_frowning_vs_smiling_text"] = float((d_img2 @ d_txt).mean())
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1100)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--vision-layers", type=int, default=4)
    ap.add_argument("--text-layers", type=int, default=3)
    ap.add_argument("--proj", type=int, default=128)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data" / "toy_clip"))
    ap.add_argument("--eval-n", type=int, default=600)
    ap.add_argument("--aux-weight", type=float, default=0.3, help="weight of the attribute-probe loss (0: none)")
    ap.add_argument("--hard-groups", type=int, default=24, help="triples of near-identical faces per batch")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    out_dir = Path(args.out)
    tok = build_tokenizer(tw.caption_vocabulary(), out_dir)
    model = build_model(len(tok), tok, args).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"toy CLIP: {n_params / 1e6:.2f} M parameters, vocabulary {len(tok)}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)
             and n != "logit_scale"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0},
                             {"params": [model.logit_scale], "weight_decay": 0.0, "lr": 10 * args.lr}],
                            lr=args.lr, betas=(0.9, 0.98))  # the temperature learns 10x faster
    probes = torch.nn.ModuleDict({k: torch.nn.Linear(args.proj, len(tw.SMILE_LABELS) if k == "smile"
                                                      else len(tw.ATTRIBUTES[k])) for k in tw.ATTRIBUTES}).to(device)
    opt.add_param_group({"params": list(probes.parameters()), "weight_decay": 0.0, "lr": args.lr})
    warm = min(150, args.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warm)) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))))
    g = torch.Generator().manual_seed(args.seed)
    enc = Encoder(model, tok, device)
    t0 = time.time()
    bar = tqdm(range(args.steps), desc="toy CLIP")
    for step in bar:
        model.train()
        step_seed = args.seed * 1_000_003 + step
        attrs, captions = training_batch(args.batch, step_seed, args.hard_groups)
        images = augment(tw.render(attrs), g)
        t = tok(captions, padding=True, truncation=True, max_length=32, return_tensors="pt").to(device)
        img = F.normalize(features(model.get_image_features(pixel_values=to_clip_input(images.to(device), args.image_size))), dim=-1)
        txt = F.normalize(features(model.get_text_features(input_ids=t.input_ids, attention_mask=t.attention_mask)), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32, device=device)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean() + torch.sum(-target * logits.log_softmax(0).T, 1).mean())
        if args.aux_weight > 0:
            emb = 8.0 * img  # probes read the unit embedding at a fixed scale
            for k, head in probes.items():
                if k == "smile":
                    y = torch.tensor([tw.SMILE_LABELS.index(tw.smile_label(a["smile"])) for a in attrs], device=device)
                    keep = torch.ones(len(attrs), dtype=torch.bool, device=device)
                else:
                    y = torch.tensor([tw.ATTRIBUTES[k].index(a[k]) for a in attrs], device=device)
                    keep = torch.tensor([k != "hair_color" or a["hair"] != "none" for a in attrs], device=device)
                loss = loss + args.aux_weight * F.cross_entropy(head(emb)[keep], y[keep])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        if (step + 1) % 200 == 0:
            m = evaluate(enc, 150)
            tqdm.write(f"step {step + 1}: " + json.dumps({k: v for k, v in m.items() if k not in ("n", "eval_seed")}))
    wall = time.time() - t0
    model.eval()
    metrics32 = evaluate(enc, args.eval_n)
    print("fp32:", json.dumps(metrics32))
    # fp16 copy: keep it when it measures the same as fp32 (to 0.01)
    model.cpu()
    m16 = type(model)(model.config)
    m16.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    metrics16 = evaluate(Encoder(m16.eval(), tok, torch.device("cpu")), args.eval_n)
    print("fp16:", json.dumps(metrics16))
    keep16 = all(abs(metrics16[k] - metrics32[k]) <= 0.01 for k in metrics32 if isinstance(metrics32[k], float))
    if keep16:
        model.half()
    model.save_pretrained(str(out_dir))
    if keep16:  # fp16 on disk for size; loaders get fp32 (from_pretrained's "auto" dtype reads the config)
        cfg_file = out_dir / "config.json"
        cfg_json = json.loads(cfg_file.read_text())
        for key in ("dtype", "torch_dtype"):
            if key in cfg_json:
                cfg_json[key] = "float32"
        cfg_file.write_text(json.dumps(cfg_json, indent=2, sort_keys=True) + "\n")
    from transformers import CLIPImageProcessor
    CLIPImageProcessor(size={"shortest_edge": args.image_size}, crop_size={"height": args.image_size,
                       "width": args.image_size}, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
                       resample=2).save_pretrained(str(out_dir))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        commit = "unknown"
    info = {"parameters_m": round(n_params / 1e6, 2), "saved_dtype": "float16" if keep16 else "float32",
            "training": {"steps": args.steps, "batch": args.batch, "hard_groups": args.hard_groups,
                         "aux_weight": args.aux_weight, "lr": args.lr, "seed": args.seed, "device": str(device), "threads": args.threads, "wall_s": round(wall, 1), "commit": commit,
                         "config": {k: getattr(args, k) for k in ("image_size", "patch", "width", "vision_layers",
                                                                  "text_layers", "proj")}},
            "metrics_fp32": metrics32, "metrics_saved": metrics16 if keep16 else metrics32}
    (out_dir / "training_info.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
