"""Train the figure layer of a built-in model folder (model/sprites.py) and install it there.

    longtake train-sprites --model src/longtake/assets/builtin --out runs/sprites --install

1. **Crops** (``crops.pt`` in the run folder, written once): StoryWorld stories of the
   training split (never the held-out looks the benches judge) are planned as a render plans
   them and drawn by the renderer; every ``every``-th frame, each whole character (inside
   the frame, not overlapping another, no fade) gives one window of ``height`` x ``width``
   pixels whose bottom centre is the point between its feet (the centre of its lower body),
   with its own pixels as alpha, the captioned attributes its description says, its action,
   the kind of place and the camera zoom; and the chunk's prompt with the character's slot.
   With ``items`` or ``skin`` > 0 also its *parts*: the pixels that change when the same
   frame is drawn again without the badge and the bag and with the watch the other way
   (bit 1), or with another skin tone (bit 2).
2. **Cast head**: a linear layer on the folder's frozen text encoder at each character's
   name token (what the layout reads) names every captioned attribute, "not said" included;
   full-batch AdamW, ``cast_epochs`` passes; accuracy on every 20th story is logged.
3. **Decoder**: from the true attributes and the character's *look* (every attribute as
   drawn and its hidden details; with probability ``look_dropout`` only the attributes the
   description says, the rest "unknown", so the decoder also draws without a look) and the
   kind of place (replaced by "unknown" with probability ``kind_dropout``): squared RGB
   error on the character's pixels (each weighted by its local contrast with ``detail`` >
   0, :func:`contrast_weight`, so a badge or a watch a few pixels wide counts; with ``items``
   / ``skin`` > 0 the part pixels weigh that much more, :func:`part_weight`) plus the
   alpha's binary cross-entropy; AdamW with warm-up and a cosine rate, bfloat16 autocast.
   Checkpointed atomically every ``checkpoint_seconds`` (``ckpt.pt``); the same command
   continues a killed run; per-step batches come from generators seeded by (seed, step).

``--install`` writes ``sprites.safetensors`` and the ``"sprites"`` entry of ``model.json``
into the model folder (atomically). Progress is one line per ``log_every`` steps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from longtake.atomic import atomic_output
from longtake.model.sprites import SIZES, FigureSprites, SpriteConfig, action_index, condition, install_sprites, kind_index, look_vector
from longtake.world.vocab import stable_seed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpriteTrainConfig:
    stories: int = 1200
    duration: tuple[float, float] = (6.0, 10.0)
    every: int = 6  # frames between sampled frames
    steps: int = 2500
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 100
    kind_dropout: float = 0.3
    look_dropout: float = 0.3  # share of crops shown without their look (what the text leaves open unknown)
    shift: int = 0  # pixels the decoder's loss lets a figure move (figure_loss)
    detail: float = 0.0  # extra weight of a figure pixel per unit of local contrast (figure_loss)
    items: float = 0.0  # extra weight of the badge's, the bag's and the watch's pixels (part_weight)
    skin: float = 0.0  # extra weight of the skin's pixels (part_weight)
    channels: tuple[int, int, int, int] | None = None  # the decoder's channels at 1/8..1/1 (None: SpriteConfig's)
    cast_epochs: int = 400
    cast_lr: float = 3e-3
    seed: int = 0
    checkpoint_seconds: float = 120.0
    log_every: int = 250

    def __post_init__(self) -> None:
        from longtake.train.config import TrainError

        if self.stories < 1 or self.steps < 1 or self.batch < 1 or self.every < 1 or self.cast_epochs < 1:
            raise TrainError(f"stories, steps, batch, every and cast_epochs must be >= 1, got {self.stories}, {self.steps}, {self.batch}, {self.every}, {self.cast_epochs}")
        if self.channels is not None:
            try:  # the layer's own check of its widths
                SpriteConfig(channels=tuple(self.channels))
            except ValueError as exc:
                raise TrainError(str(exc)) from None
        if min(self.detail, self.items, self.skin) < 0:
            raise TrainError(f"detail, items and skin must be >= 0, got {self.detail}, {self.items}, {self.skin}")
        for name in ("kind_dropout", "look_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TrainError(f"{name} must be in [0, 1), got {getattr(self, name)}")


def _story(cfg: SpriteTrainConfig, j: int, size: int, fps: int):
    from longtake.world.sampler import HELDOUT_SEED_OFFSET, sample_story

    rng = np.random.default_rng(stable_seed("longtake-sprites", cfg.seed, j))
    seed_j = int(rng.integers(0, HELDOUT_SEED_OFFSET, dtype=np.int64))
    lo, hi = cfg.duration
    duration = lo + 0.5 * int(rng.integers(int((hi - lo) / 0.5) + 1))
    return sample_story(seed_j, float(duration), split="train", fps=fps, size=(size, size))


def _redrawn(story, change):
    """A renderer of ``story`` whose characters' hidden details are ``change(details)``."""
    from longtake.world.renderer import WorldRenderer

    renderer = WorldRenderer(story)
    renderer.hidden = {cid: change(h) for cid, h in renderer.hidden.items()}
    return renderer


def _without_items(h):
    return dataclasses.replace(h, badge_shape="none", bag="none", watch=not h.watch)


def _other_skin(h):
    from longtake.world.vocab import SKIN_TONES

    return dataclasses.replace(h, skin_tone=(h.skin_tone + len(SKIN_TONES) // 2) % len(SKIN_TONES))


def collect_crops(cfg: SpriteTrainConfig, sprite: SpriteConfig, *, size: int = 128, fps: int = 16,
                  frames_per_chunk: int = 12, first_chunk_frames: int = 9, parts: bool = False) -> dict:
    """Render ``cfg.stories`` training stories -> the crops of step 1 (module docstring);
    ``parts``: with the part masks (each frame drawn twice more)."""
    from longtake.eval.probe_data import attribute_labels
    from longtake.model.layout import slot_names
    from longtake.plan import plan
    from longtake.world.parse import parse_appearance
    from longtake.world.renderer import WorldRenderer

    sh, sw = sprite.height, sprite.width
    xs, labels, full, looks, actions, kinds, zooms, prompts, slots, story_of, masks = [], [], [], [], [], [], [], [], [], [], []
    for j in range(cfg.stories):
        story = _story(cfg, j, size, fps)
        timeline = plan(story, frames_per_chunk=frames_per_chunk, first_chunk_frames=first_chunk_frames)
        renderer = WorldRenderer(story)
        others = [_redrawn(story, _without_items), _redrawn(story, _other_skin)] if parts else []
        said = {c.id: attribute_labels(parse_appearance(c.description)) for c in story.characters}
        resolved = {c.id: attribute_labels(renderer.appearance[c.id]) for c in story.characters}
        vectors = {c.id: look_vector(renderer.hidden[c.id]) for c in story.characters}
        for chunk in timeline.chunks:
            order = slot_names(chunk.prompt)
            frames, truths = renderer.render_chunk(chunk, masks=True)
            changed = [(o.render_chunk(chunk, masks=False)[0] != frames).any(-1) for o in others]
            for f in range(0, len(frames), cfg.every):
                tr = truths[f]
                if tr.fade < 1.0:
                    continue
                boxes = [c.bbox for c in tr.characters if c.visible and c.bbox]
                for c in tr.characters:
                    if not (c.visible and c.bbox) or timeline.characters.get(c.id) not in order:
                        continue
                    x0, y0, x1, y1 = c.bbox
                    if x0 <= 0 or y0 <= 0 or x1 >= size or y1 >= size or y1 - y0 < 20:
                        continue
                    if any(o != c.bbox and not (o[2] <= x0 or o[0] >= x1 or o[3] <= y0 or o[1] >= y1) for o in boxes):
                        continue
                    own = tr.mask == c.label
                    lower = np.nonzero(own[y0 + int(0.4 * (y1 - y0)) : y1])[1]
                    cx = int(round(lower.mean())) if lower.size else (x0 + x1) // 2
                    top, left = y1 - sh, cx - sw // 2
                    win = np.zeros((sh, sw, 4), np.uint8)
                    a0, a1, b0, b1 = max(top, 0), min(y1, size), max(left, 0), min(left + sw, size)
                    win[a0 - top : a1 - top, b0 - left : b1 - left, :3] = frames[f][a0:a1, b0:b1]
                    win[a0 - top : a1 - top, b0 - left : b1 - left, 3] = own[a0:a1, b0:b1] * 255
                    if parts:
                        bits = np.zeros((sh, sw), np.uint8)
                        for b, diff in enumerate(changed):
                            bits[a0 - top : a1 - top, b0 - left : b1 - left] |= (diff[f] & own)[a0:a1, b0:b1].astype(np.uint8) << b
                        masks.append(bits)
                    xs.append(win)
                    labels.append(said[c.id])
                    full.append(resolved[c.id])
                    looks.append(vectors[c.id])
                    actions.append(action_index(c.action))
                    kinds.append(kind_index(tr.location_kind))
                    zooms.append(float(tr.camera["zoom"]))
                    prompts.append(chunk.prompt)
                    slots.append(order.index(timeline.characters[c.id]))
                    story_of.append(j)
    if not xs:
        from longtake.train.config import TrainError

        raise TrainError(f"{cfg.stories} stories gave no whole, unoverlapped character to learn from")
    crops = {"x": torch.from_numpy(np.stack(xs)), "labels": torch.tensor(labels), "full": torch.tensor(full),
             "looks": torch.stack(looks), "actions": torch.tensor(actions),
             "kinds": torch.tensor(kinds), "zoom": torch.tensor(zooms), "prompts": prompts, "slots": torch.tensor(slots),
             "story": torch.tensor(story_of)}
    if parts:
        crops["parts"] = torch.from_numpy(np.stack(masks))  # uint8 (N, h, w): bit 1 items, bit 2 skin
    return crops


def train_cast(sprites: FigureSprites, text, crops: dict, cfg: SpriteTrainConfig, log) -> dict:
    """Step 2: fit ``sprites.cast`` on the frozen text encoder -> {"held_accuracy": ...}."""
    from longtake.model.layout import name_embeddings

    pairs: dict[tuple[str, int], int] = {}
    for i, (p, k) in enumerate(zip(crops["prompts"], crops["slots"].tolist())):
        pairs.setdefault((p, k), i)
    prompts = sorted({p for p, _ in pairs})
    emb_of = {}
    with torch.no_grad():
        for s in range(0, len(prompts), 64):
            chunk = prompts[s : s + 64]
            emb, _ = text.encode(chunk)
            for p, n in zip(chunk, name_embeddings(emb, chunk, text.tokenizer.tokens, text.max_tokens, int(crops["slots"].max()) + 1)):
                emb_of[p] = n
    idx = list(pairs.values())
    z = torch.stack([emb_of[p][k] for p, k in pairs]).float()
    y = crops["labels"][idx].clone()
    for a, s in enumerate(SIZES):
        y[y[:, a] < 0, a] = s - 1
    held = crops["story"][idx] % 20 == 0
    if bool(held.all()) or not bool(held.any()):
        held = torch.arange(len(idx)) % 20 == 0
    opt = torch.optim.AdamW(sprites.cast.parameters(), lr=cfg.cast_lr, weight_decay=1e-4)

    def loss_acc(zz, yy):
        out = sprites.cast(zz).split(SIZES, dim=1)
        loss = sum(F.cross_entropy(o, yy[:, a]) for a, o in enumerate(out))
        return loss, torch.stack([o.argmax(1) == yy[:, a] for a, o in enumerate(out)], 1).float().mean()

    for _ in range(cfg.cast_epochs):
        loss, _ = loss_acc(z[~held], y[~held])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, acc = loss_acc(z[held], y[held])
    log(f"cast head: {len(idx)} names, attributes right on held-back stories {100 * float(acc):.1f}%")
    return {"names": len(idx), "held_accuracy": float(acc)}


def contrast_weight(rgb: torch.Tensor, alpha: torch.Tensor, detail: float) -> torch.Tensor:
    """(N, h, w): 1 + ``detail`` x each figure pixel's local contrast, the mean absolute
    difference of its RGB from the mean of the figure's pixels around it (3 x 3). A badge,
    a watch or a strap, a few pixels unlike what surrounds them, weighs more than the
    middle of a plain shirt; the window's empty pixels do not count as surroundings."""
    a = alpha[:, None]
    mean = F.avg_pool2d(rgb * a, 3, 1, 1) / F.avg_pool2d(a, 3, 1, 1).clamp_min(1e-6)
    return 1.0 + detail * (rgb - mean).abs().mean(1) * alpha


def part_weight(parts: torch.Tensor, items: float, skin: float) -> torch.Tensor:
    """(N, h, w) uint8 part bits (collect_crops) -> 1 + ``items`` on the badge's, the bag's
    and the watch's pixels + ``skin`` on the skin's: a look's details weigh more and nothing
    else moves (the pattern and the hair keep weight 1, unlike :func:`contrast_weight`)."""
    p = parts.long()
    return 1.0 + items * (p & 1).float() + skin * ((p >> 1) & 1).float()


def figure_loss(pred: torch.Tensor, logits: torch.Tensor, rgb: torch.Tensor, alpha: torch.Tensor, shift: int = 0,
                detail: float = 0.0, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared RGB error on the figure's pixels and the alpha's cross-entropy, pred/rgb
    (N, 3, h, w), logits/alpha (N, h, w). ``shift`` > 0: per figure, the smaller sum of the two
    over the target moved by up to ``shift`` pixels each way. A crop's window is centred on
    its lower body to the nearest pixel, so the same figure lands a pixel left or right with
    the pose, and a plain mean blurs what is a pixel or two wide (stripes, checks, a badge).
    ``detail`` > 0 weighs each figure pixel's RGB error by :func:`contrast_weight`, ``weight``
    (N, h, w) by that too (it moves with the target)."""
    if detail > 0:
        weight = contrast_weight(rgb, alpha, detail) * (1.0 if weight is None else weight)
    if shift <= 0:
        wa = alpha if weight is None else weight * alpha
        l_rgb = ((pred - rgb).square().mean(1) * wa).sum() / wa.sum().clamp_min(1.0)
        return l_rgb, F.binary_cross_entropy_with_logits(logits, alpha)
    best = None
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            t, a = torch.roll(rgb, (dy, dx), (2, 3)), torch.roll(alpha, (dy, dx), (1, 2))
            wa = a if weight is None else torch.roll(weight, (dy, dx), (1, 2)) * a
            e_rgb = ((pred - t).square().mean(1) * wa).sum((1, 2)) / wa.sum((1, 2)).clamp_min(1.0)
            e_alpha = F.binary_cross_entropy_with_logits(logits, a, reduction="none").mean((1, 2))
            pair = torch.stack([e_rgb, e_alpha], 1)  # (N, 2)
            best = pair if best is None else torch.where((pair.sum(1) < best.sum(1))[:, None], pair, best)
    return best[:, 0].mean(), best[:, 1].mean()


def train_decoder(sprites: FigureSprites, crops: dict, cfg: SpriteTrainConfig, ckpt: Path, log) -> dict:
    """Step 3 (resumable from ``ckpt``) -> {"steps", "loss_rgb", "loss_alpha", "seconds"}."""
    net = sprites.net
    x = crops["x"].permute(0, 3, 1, 2).contiguous()  # uint8 (N, 4, h, w)
    n = len(x)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)
    step, seconds, recent = 0, 0.0, []
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        step, seconds = state["step"], state["seconds"]
        recent = [tuple(r) for r in state.get("recent", [])]  # the losses the last report averages
        log(f"decoder: resumed at step {step}")
    last_save = time.monotonic()
    t0 = time.monotonic()

    def save() -> None:
        with atomic_output(ckpt) as tmp:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": seconds + time.monotonic() - t0,
                        "recent": recent}, tmp)

    while step < cfg.steps:
        g = torch.Generator().manual_seed(stable_seed("longtake-sprites-step", cfg.seed, step))
        idx = torch.randint(n, (cfg.batch,), generator=g)
        kinds = crops["kinds"][idx].clone()
        kinds[torch.rand(cfg.batch, generator=g) < cfg.kind_dropout] = kind_index(None)
        shown = torch.rand(cfg.batch, generator=g) >= cfg.look_dropout  # with its look: every attribute and the hidden details
        labels = torch.where(shown[:, None], crops["full"][idx], crops["labels"][idx])
        looks = torch.where(shown[:, None], crops["looks"][idx], look_vector(None))
        cond = condition(labels, crops["actions"][idx], kinds, crops["zoom"][idx], looks)
        batch = x[idx].float()
        rgb, alpha = batch[:, :3] / 127.5 - 1.0, (batch[:, 3] > 127).float()
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred, logits = net(cond)
        pred, logits = pred.float(), logits.float()
        weight = part_weight(crops["parts"][idx], cfg.items, cfg.skin) if cfg.items or cfg.skin else None
        l_rgb, l_alpha = figure_loss(pred, logits, rgb, alpha, cfg.shift, cfg.detail, weight)
        opt.zero_grad()
        (l_rgb + l_alpha).backward()
        opt.step()
        step += 1
        recent.append((float(l_rgb.detach()), float(l_alpha.detach())))
        recent = recent[-cfg.log_every :]
        if step % cfg.log_every == 0 or step == cfg.steps:
            r = np.mean(recent, axis=0)
            log(f"decoder: step {step}/{cfg.steps}, rgb {r[0]:.4f}, alpha {r[1]:.4f}, {seconds + time.monotonic() - t0:.0f} s")
        if time.monotonic() - last_save > cfg.checkpoint_seconds:
            save()
            last_save = time.monotonic()
    save()
    r = np.mean(recent, axis=0).tolist() if recent else (None, None)  # None: a checkpoint from before the losses were kept
    return {"steps": step, "loss_rgb": r[0], "loss_alpha": r[1], "seconds": seconds + time.monotonic() - t0}


def run(model: Path, out: Path, cfg: SpriteTrainConfig, *, install: bool = False, log: Callable[[str], None] | None = None,
        command: str | None = None) -> FigureSprites:
    """Steps 1-3 in the run folder ``out`` (resumable), then ``install`` into ``model``.
    ``log`` gets one line per step and progress report (default: this module's logger)."""
    log = log or logger.info
    from longtake.model.builtin import load_builtin
    from longtake.train.config import TrainError

    built = load_builtin(model, sprites=False)
    if built.settings.layout_prior is None:
        raise TrainError(f"{model}: the DiT has no layout input, so there is nowhere to stand a sprite")
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "settings.json"
    untimed = {"checkpoint_seconds": None, "log_every": None}
    wanted = {"train": dataclasses.asdict(cfg) | untimed, "model": str(Path(model).resolve())}
    if settings.is_file():
        held = json.loads(settings.read_text())
        # a setting added since the run began counts as its default, which reproduces what the run did
        held["train"] = dataclasses.asdict(SpriteTrainConfig()) | untimed | dict(held.get("train") or {})
        if held != json.loads(json.dumps(wanted)):
            raise TrainError(f"{out} holds a run with other settings ({settings}); use a new --out")
    settings.write_text(json.dumps(wanted, indent=1))
    sprite_cfg = SpriteConfig(text_dim=built.text_encoder.dim, **({"channels": cfg.channels} if cfg.channels else {}))
    torch.manual_seed(cfg.seed)
    sprites = FigureSprites(sprite_cfg)
    crops_path = out / "crops.pt"
    t0 = time.monotonic()
    parts = bool(cfg.items or cfg.skin)
    crops = torch.load(crops_path, weights_only=False) if crops_path.is_file() else None
    if crops is None or (parts and "parts" not in crops):  # crops from a run without part weights lack them
        crops = collect_crops(cfg, sprite_cfg, fps=16, parts=parts)
        with atomic_output(crops_path) as tmp:
            torch.save(crops, tmp)
        log(f"crops: {len(crops['x'])} figures from {cfg.stories} stories in {time.monotonic() - t0:.0f} s")
    cast = train_cast(sprites, built.text_encoder, crops, cfg, log)
    dec = train_decoder(sprites, crops, cfg, out / "ckpt.pt", log)
    sprites.eval()
    if install:
        install_sprites(model, sprites, provenance={"command": command or "longtake train-sprites",
                                                    "config": dataclasses.asdict(cfg), "crops": len(crops["x"]), "cast": cast, "decoder": dec})
        log(f"installed into {model}")
    return sprites
