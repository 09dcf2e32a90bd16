"""``app=anagram``: ambiguous images (SyncTweedies' visual-anagram setting): one square image that
reads as a different prompt under each of several fixed transforms.

    syncframe run app=anagram views='[{"prompt":"a rabbit"},{"transform":"rot180","prompt":"a duck"}]'
"""
from __future__ import annotations

from typing import Literal

import torch
from PIL import Image, ImageDraw
from pydantic import model_validator

from syncframe.apps.base import App, AppFacts, to_pil
from syncframe.errors import ConfigError
from syncframe.messages import note
from syncframe.options import Options, option
from syncframe.registry import register_app
from syncframe.resources import view_state_bytes
from syncframe.spaces.anagram import TRANSFORMS, AnagramSpace, permutation

Transform = Literal[TRANSFORMS]  # type: ignore[valid-type]


class AnagramView(Options):
    """One view of the image: a transform of it and the prompt it should read as."""

    prompt: str = option(..., "what this view should show")
    transform: Transform = option("identity", f"one of {', '.join(TRANSFORMS)}")
    piece: int = option(64, "jigsaw: the side of a square piece in pixels (a multiple of 8: a permutation of "
                            "latent pixels too)", ge=8)
    angle: Literal[90, 180, 270] = option(90, "inner-rotate: the disc's turn, degrees")
    radius: float = option(0.5, "inner-rotate: the disc's radius, as a fraction of half the side", gt=0, le=1)
    seed: int = option(0, "jigsaw: the seed of the pieces' permutation", ge=0)


class AnagramInputs(Options):
    views: list[AnagramView] | None = option(None, "the views: [{prompt, transform[, piece, angle, radius, seed]}, "
                                                   "...], at least two")

    @model_validator(mode="after")
    def _two_at_least(self):
        if self.views is not None and len(self.views) < 2:
            raise ValueError("an anagram needs at least two views, each with its own prompt and transform")
        return self


class AnagramOptions(Options):
    sheet_size: int = option(256, "side of each view in views.png", ge=32, le=2048)
    gif_frames: int = option(12, "frames of each cross-fade in anagram.gif", ge=2, le=120)


@register_app("anagram", options=AnagramOptions, inputs=AnagramInputs, common=dict(sync="synctweedies"),
              facts=AppFacts(main_image="image.png", images=("image.png", "views.png")))
class AnagramApp(App):
    """An ambiguous image: one square image read differently under each view's transform."""

    layout_image_name = "image.png"

    def plan_size(self):
        run, views = self.run, self.inputs.views
        if not views:
            raise ConfigError("app=anagram needs views=[{prompt: ...}, {transform: rot180, prompt: ...}] (at least two)")
        if run.width != run.height:
            raise ConfigError(f"width={run.width} height={run.height}: an anagram is square; give one size "
                              f"(e.g. width={self.spec.window_px} height={self.spec.window_px})")
        n = len(views)
        return n, {"the views": n * view_state_bytes(self.channels, self.window)}, f"{n} views"

    def build_space(self) -> AnagramSpace:
        side, scale = self.run.width, self.spec.scale
        size = side // scale
        if side % scale or size < 8:
            raise ConfigError(f"width={side}: the image side is a multiple of {scale} pixels, at least {8 * scale}")
        transforms = []
        for i, view in enumerate(self.inputs.views):
            if view.transform == "jigsaw" and (view.piece % scale or side % view.piece):
                raise ConfigError(f"views[{i}].piece={view.piece}: jigsaw pieces are a multiple of {scale} px "
                                  f"that divides the side ({side} px), so they permute latent pixels exactly")
            transforms.append(permutation(view.transform, size, view.piece // scale, view.angle, view.radius,
                                          view.seed))
        if any(view.transform == "negate" for view in self.inputs.views):
            note("transform=negate negates latents, which a VAE does not decode to the colour-inverted image "
                 "(76% relative error on TAESD, benchmarks/anagram.py); views.png shows what each view decodes to")
        return AnagramSpace(transforms, size, self.channels)

    def prompts(self):
        texts = [view.prompt for view in self.inputs.views]
        distinct = sorted(set(texts), key=texts.index)
        return distinct, [distinct.index(t) for t in texts]

    def finalize(self, views, denoiser):
        o = self.options
        z = self.base_space.unproject(views)
        with torch.no_grad():
            image = denoiser.decode(z[None]).float()[0].clamp(-1, 1)
            seen = denoiser.decode(self.base_space.project(z)).float().clamp(-1, 1)  # what each prompt's view shows
        labels = [f"{v.transform}: {v.prompt}" for v in self.inputs.views]
        self.report = {"views": labels, **clip_scores(seen, [v.prompt for v in self.inputs.views],
                                                       self.run.metrics.clip)}
        frames = [to_pil(view) for view in seen]
        return {"image.png": to_pil(image), "views.png": labelled_sheet(frames, labels, o.sheet_size),
                "anagram.gif": GifBytes(crossfade(frames, o.gif_frames))}, z


class GifBytes:
    """An animated GIF the run folder writes (``save(path)``)."""

    def __init__(self, frames: list[Image.Image]):
        self.frames = frames

    def save(self, path) -> None:
        self.frames[0].save(path, save_all=True, append_images=self.frames[1:], duration=80, loop=0)


def crossfade(frames: list[Image.Image], steps: int) -> list[Image.Image]:
    """Each view held, then blended into the next, and back to the first."""
    out = []
    for a, b in zip(frames, frames[1:] + frames[:1]):
        out += [a] * (steps // 2) + [Image.blend(a, b, k / steps) for k in range(1, steps)]
    return out


def labelled_sheet(frames: list[Image.Image], labels: list[str], size: int) -> Image.Image:
    """The views side by side, each captioned with its transform and prompt."""
    band = 24
    sheet = Image.new("RGB", (size * len(frames), size + band), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (frame, label) in enumerate(zip(frames, labels)):
        sheet.paste(frame.resize((size, size), Image.LANCZOS), (i * size, band))
        draw.text((i * size + 4, 6), label[: size // 6], fill=(0, 0, 0))
    return sheet


def clip_scores(images: torch.Tensor, prompts: list[str], source: str | None) -> dict:
    """The visual-anagram scores (Geng et al. 2024) with a CLIP model: S_ij = cos(view i, prompt j);
    alignment A = min_i S_ii; concealment C = mean_i softmax_j(logit_scale · S_ij)_i. Skipped with a
    note without a CLIP model (``metrics.clip=<repo|folder>``)."""
    if source is None:
        note("anagram: CLIP alignment and concealment scores skipped (give metrics.clip=<CLIP repository or folder>)")
        return {}
    import torch.nn.functional as F
    from transformers import CLIPModel, CLIPTokenizer

    from syncframe.models.hub import locate

    where = locate(source, "metrics.clip")
    try:
        model, tokenizer = CLIPModel.from_pretrained(where).eval(), CLIPTokenizer.from_pretrained(where)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"metrics.clip={source}: not a CLIP model ({str(exc).splitlines()[0]})") from None
    size = model.config.vision_config.image_size
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    pixels = (F.interpolate((images.cpu() + 1) / 2, size=size, mode="bicubic", antialias=True) - mean) / std
    with torch.no_grad():
        tokens = tokenizer(prompts, padding=True, return_tensors="pt")
        logits = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                       pixel_values=pixels).logits_per_image  # logit_scale · cos(image i, prompt j)
    scores = logits / model.logit_scale.exp()
    alignment = scores.diagonal().min().item()
    concealment = logits.softmax(dim=1).diagonal().mean().item()
    return {"clip_alignment": round(alignment, 4), "clip_concealment": round(concealment, 4),
            "clip_scores": [[round(v, 4) for v in row] for row in scores.tolist()]}
