"""keep=: part of init= kept exactly, the rest generated (outpainting, inpainting, a texture completed).

Equal to diffusers' StableDiffusionInpaintPipeline (its blended scheme for a 4-channel UNet) on one
window; the kept region bit for bit in the views; every bad input one line."""
import numpy as np
import pytest
import torch
from PIL import Image

from syncframe.config import resolve
from syncframe.errors import ConfigError
from syncframe.pipeline import generate_from_config, prepare

from test_init import photo


def mask_image(width: int, height: int, keep_columns: slice, keep_rows: slice = slice(None)) -> Image.Image:
    mask = np.zeros((height, width), np.uint8)
    mask[keep_rows, keep_columns] = 255
    return Image.fromarray(mask)


@pytest.fixture
def window_files(tmp_path):
    """A 512² photo and a mask keeping its left half and a block of its right (edges on 8-pixel lines)."""
    photo(512, 512).save(tmp_path / "photo.png")
    mask = np.zeros((512, 512), np.uint8)
    mask[:, :256] = 255
    mask[64:192, 384:448] = 255
    Image.fromarray(mask).save(tmp_path / "keep.png")
    return tmp_path / "photo.png", tmp_path / "keep.png"


def run(*overrides, denoiser=None):
    return generate_from_config(resolve(["model=tiny", "progress=false", *overrides]), denoiser)


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_one_window_with_keep_equals_the_inpaint_pipeline(tiny_denoiser, window_files, strength):
    from diffusers import StableDiffusionInpaintPipeline

    image_file, keep_file = window_files
    cfg = resolve(["model=tiny", "progress=false", "width=512", "height=512", f"init={image_file}",
                   f"keep={keep_file}", f"strength={strength}", "steps=10", "seed=4", "sync=multidiffusion"])
    ours = generate_from_config(cfg, tiny_denoiser).canonical
    cfg = prepare(cfg).cfg
    p = tiny_denoiser.pipe
    pipe = StableDiffusionInpaintPipeline(vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=p.unet,
                                          scheduler=p.scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    repaint = Image.fromarray(255 - np.asarray(Image.open(keep_file)))  # theirs is white where it generates
    theirs = pipe(cfg["prompt"], image=Image.open(image_file), mask_image=repaint, strength=strength,
                  num_inference_steps=10, guidance_scale=cfg["guidance"], generator=torch.Generator().manual_seed(4),
                  output_type="latent").images[0]
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    # the kept region moved nowhere and the rest is new (the test can tell them apart)
    plain = run("width=512", "height=512", f"init={image_file}", "strength=0", "seed=4", denoiser=tiny_denoiser)
    kept = torch.zeros(64, 64, dtype=torch.bool)
    kept[:, :32] = True
    assert torch.equal(ours[:, kept], plain.canonical[:, kept])
    assert (ours[:, ~kept] - plain.canonical[:, ~kept]).abs().mean() > 0.1


@pytest.mark.parametrize("sync", ["none", "multidiffusion", "synctweedies", "syncdiffusion", "syncsde"])
def test_the_kept_views_are_the_content_bit_for_bit_for_every_per_view_sync(sync, tiny_denoiser, tmp_path):
    photo(1024, 512).save(tmp_path / "wide.png")
    mask_image(1024, 512, slice(0, 300), slice(0, 512)).save(tmp_path / "keep.png")  # an edge off the latent grid
    common = ["width=1024", "height=512", f"init={tmp_path / 'wide.png'}", "steps=3", "seed=1", f"sync={sync}"]
    if sync == "syncdiffusion":
        common += ["sync.loss_resolution=64", "sync.grad_through_unet=false"]
    result = run(*common, f"keep={tmp_path / 'keep.png'}", denoiser=tiny_denoiser)
    content = run(*common, "strength=0", denoiser=tiny_denoiser)  # init= through the same encoding
    prepared = prepare(resolve(["model=tiny", *common, f"keep={tmp_path / 'keep.png'}"]))
    mask = prepared.app.keep_mask
    assert mask.shape == (1, 64, 128) and float(mask[0, 0, 36]) == 1 and float(mask[0, 0, 37]) == 0.5  # 296-303 px
    view_masks = prepared.app.space.project(mask.expand(4, -1, -1))[:, :1].expand(-1, 4, -1, -1)
    whole = view_masks >= 1
    assert whole.any() and (~whole).any()
    assert torch.equal(result.views[whole], content.views[whole])
    assert (result.views[~whole] - content.views[~whole]).abs().mean() > 0.1
    # the canonical: the views' average of identical values, to float rounding
    assert torch.allclose(result.canonical[:, mask[0] >= 1], content.canonical[:, mask[0] >= 1], atol=1e-6)


def test_keep_on_the_equirect_map_and_the_texture(tiny_denoiser, tmp_path):
    from pathlib import Path

    assets = Path(__file__).resolve().parents[1] / "assets"
    photo(512, 256).save(tmp_path / "room.png")
    mask_image(512, 256, slice(0, 256)).save(tmp_path / "half.png")
    rings = "app.rings=[{pitch: 0, count: 4, fov: 90}, {pitch: 90, count: 1, fov: 90}]"
    for app, extra in (("panorama360", [f"init={tmp_path / 'room.png'}", "width=256", "height=128", rings]),
                       ("mesh", [f"mesh={assets / 'vase.obj'}", f"init={tmp_path / 'room.png'}", "width=256",
                                 "height=256", "app.views=[{elevation: 0, count: 3}]", "app.heldout_views=0"])):
        if app == "mesh":
            mask_image(256, 256, slice(0, 128)).save(tmp_path / "half.png")
        common = [f"app={app}", "app.viewer=false", "steps=2", "seed=3", *extra]
        result = run(*common, f"keep={tmp_path / 'half.png'}", denoiser=tiny_denoiser)
        content = run(*common, "strength=0", denoiser=tiny_denoiser)
        app_built = prepare(resolve(["model=tiny", *common, f"keep={tmp_path / 'half.png'}"])).app
        whole = app_built.space.project(app_built.keep_mask.expand(4, -1, -1))[:, :1].expand(-1, 4, -1, -1) >= 1
        assert whole.any() and (~whole).any(), app
        assert torch.equal(result.views[whole], content.views[whole]), app
        assert (result.views[~whole] - content.views[~whole]).abs().mean() > 0.05, app


def test_bad_keep_inputs_are_one_line_each(tmp_path):
    photo(1024, 512).save(tmp_path / "wide.png")
    mask_image(1024, 512, slice(0, 0)).save(tmp_path / "black.png")
    mask_image(1024, 512, slice(None)).save(tmp_path / "white.png")
    mask_image(512, 512, slice(0, 100)).save(tmp_path / "square.png")
    base = ["model=tiny", "width=1024", "height=512", "steps=2", "progress=false"]
    cases = {
        (f"keep={tmp_path / 'square.png'}", f"init={tmp_path / 'wide.png'}"): "is 512x512, and the panorama canvas is "
                                                                            "1024x512: give a mask of the same aspect (2:1)",
        (f"keep={tmp_path / 'black.png'}", f"init={tmp_path / 'wide.png'}"): "black everywhere: nothing of init= is kept",
        (f"keep={tmp_path / 'white.png'}", f"init={tmp_path / 'wide.png'}"): "white everywhere: nothing is left to generate",
        (f"keep={tmp_path / 'white.png'}",): "there is no init=",
        (f"keep={tmp_path / 'nothing.png'}", f"init={tmp_path / 'wide.png'}"): "does not exist",
        (f"keep={tmp_path / 'wide.png'}", f"init={tmp_path / 'wide.png'}", "sync=stochsync",
         "steps=12"): "owns its state",
        (f"keep={tmp_path / 'wide.png'}", f"init={tmp_path / 'wide.png'}", "sync=canonical-x0"): "owns its state",
        (f"keep={tmp_path / 'wide.png'}", "app=splats", "splats=assets/vase_splats.ply"): "masks a canonical pixel grid",
    }
    for extra, words in cases.items():
        with pytest.raises(ConfigError) as error:
            prepare(resolve([*base, *extra]))
        message = str(error.value)
        assert words in message and "\n" not in message, (extra, message)


def test_keep_blur_softens_the_edge_and_defaults_strength_to_one(tmp_path):
    photo(1024, 512).save(tmp_path / "wide.png")
    mask_image(1024, 512, slice(0, 512)).save(tmp_path / "keep.png")
    base = ["model=tiny", "width=1024", "height=512", f"init={tmp_path / 'wide.png'}", f"keep={tmp_path / 'keep.png'}"]
    sharp = prepare(resolve(base))
    soft = prepare(resolve([*base, "keep.blur=16"])).app.keep_mask[0, 0]
    assert sharp.plan.run.strength == 1.0
    edge = sharp.app.keep_mask[0, 0]
    assert edge[:64].eq(1).all() and edge[64:].eq(0).all()  # the edge on the latent grid: no blend at all
    # 16 px of std is 2 latents: a symmetric ramp from about 2.5 latents inside to 2.5 outside (measured)
    assert 0.55 < float(soft[63]) < 0.65 and float(soft[63] + soft[64]) == pytest.approx(1, abs=1e-3)
    assert soft[:58].gt(0.995).all() and soft[70:].lt(0.005).all() and (soft[:-1] >= soft[1:]).all()


@pytest.mark.parametrize("yaw,pitch,fov", [(0, 0, 60), (120, 25, 80), (-150, -40, 50), (30, 80, 70)])
def test_a_placed_photo_is_what_py360convert_sees_there(yaw, pitch, fov):
    """image= is splatted by the inverse of the views' perspective projection: py360convert's e2p,
    looking where the photo looks, gets the photo back (its pixel centres on the fov edge, ours
    pixel edges: the fovs are matched as in test_equirect)."""
    import math

    py360convert = pytest.importorskip("py360convert", reason="py360convert (test extra) is the reference")
    from syncframe.spaces.equirect import place_photo

    h, w = 48, 64
    y, x = np.mgrid[0:h, 0:w] / 64
    picture = np.stack([np.sin(2 * np.pi * (1.3 * x + 0.4 * y)), np.cos(2 * np.pi * (0.5 * x - 1.1 * y)),
                        np.sin(4 * np.pi * x * y)], -1).astype(np.float32)
    placed, covered = place_photo(torch.from_numpy(picture).permute(2, 0, 1).double(), yaw, pitch, fov, 1024, 2048)
    fov_x = 2 * math.degrees(math.atan(math.tan(math.radians(fov) / 2) * (1 - 1 / w)))
    fov_y = 2 * math.degrees(math.atan(math.tan(math.radians(fov) / 2) * h / w * (1 - 1 / h)))
    seen = py360convert.e2p(placed.permute(1, 2, 0).numpy(), (fov_x, fov_y), yaw, pitch, (h, w), mode="bilinear")
    assert np.abs(seen - picture)[2:-2, 2:-2].max() < 5e-3  # measured 2.2e-3: two bilinear resamplings
    # the footprint's solid angle is the photo's: 4 atan(tan(fx/2) tan(fy/2) / sqrt(1 + tan² + tan²))
    tx, ty = math.tan(math.radians(fov) / 2), math.tan(math.radians(fov) / 2) * h / w
    solid = 4 * math.asin(tx * ty / math.sqrt((1 + tx**2) * (1 + ty**2)))
    lat = (0.5 - (torch.arange(1024, dtype=torch.float64) + 0.5) / 1024) * math.pi
    area = float((covered * torch.cos(lat)[:, None]).sum()) * (math.pi / 1024) * (2 * math.pi / 2048)
    assert area == pytest.approx(solid, rel=5e-3)


def test_a_photo_into_a_360_keeps_the_photo_and_generates_the_rest(tiny_denoiser, tmp_path):
    photo(400, 300).save(tmp_path / "photo.png")
    rings = "app.rings=[{pitch: 0, count: 4, fov: 90}, {pitch: 90, count: 1, fov: 90}, {pitch: -90, count: 1, fov: 90}]"
    common = ["app=panorama360", "app.viewer=false", "width=512", "height=256", "steps=2", "seed=2", rings,
              f"image={tmp_path / 'photo.png'}", "image.yaw=30", "image.pitch=10", "image.fov=80"]
    cfg = resolve(["model=tiny", "progress=false", *common])
    result = generate_from_config(cfg, tiny_denoiser)
    assert result.config["strength"] == 1.0 and result.config["image"]["yaw"] == 30
    app = prepare(cfg).app
    mask = app.keep_mask[0]
    whole = app.space.project(app.keep_mask.expand(4, -1, -1))[:, :1].expand(-1, 4, -1, -1) >= 1
    assert 0.02 < float(mask.mean()) < 0.2 and whole.any() and (~whole).any()
    # the kept views are the photo's, as a run from its placed map would have them (strength 0)
    placed = tmp_path / "placed.png"
    from syncframe.apps.base import to_pil

    to_pil(app.init_map()).save(placed)
    content = run(*[o for o in common if not o.startswith("image")], f"init={placed}", "strength=0",
                  denoiser=tiny_denoiser)
    assert (result.views[whole] - content.views[whole]).abs().max() < 0.05  # the map went through 8 bits
    assert (result.views[~whole] - content.views[~whole]).abs().mean() > 0.1


def test_bad_photo_placements_are_one_line_each(tmp_path):
    photo(100, 400).save(tmp_path / "tall.png")
    photo(400, 300).save(tmp_path / "photo.png")
    photo(512, 256).save(tmp_path / "map.png")
    base = ["model=tiny", "app=panorama360", "width=512", "height=256", "progress=false"]
    cases = {
        (f"image={tmp_path / 'tall.png'}", "image.fov=165"): "it spans 176° up and down",
        (f"image={tmp_path / 'photo.png'}", f"init={tmp_path / 'map.png'}"): "give one of them",
        (f"image={tmp_path / 'photo.png'}", f"keep={tmp_path / 'map.png'}"): "drop keep=",
        (f"image={tmp_path / 'photo.png'}", "image.fov=180"): "image.fov",
        (f"image={tmp_path / 'photo.png'}", "image.pitch=91"): "image.pitch",
    }
    for extra, words in cases.items():
        with pytest.raises(ConfigError) as error:
            prepare(resolve([*base, *extra]))
        message = str(error.value)
        assert words in message and "\n" not in message, (extra, message)


def test_renoise_is_the_forward_process_from_one_level_to_the_one_before():
    """RePaint's step back: from x_prev = a_prev x0 + s_prev ε to x_t = a x0 + s ε' in distribution, for
    a VP step (DDIM's levels) and a σ step (a = 1, Euler's)."""
    from syncframe.keep import KeptViews
    from syncframe.samplers import Step

    x0 = torch.full((200_000,), 0.7, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for a, s, a_prev, s_prev in ((0.6, 0.8, 0.8, 0.6), (1.0, 3.0, 1.0, 2.0)):
        step = Step(3, 500.0, a, s, a_prev, s_prev, 0.0, 10)
        x_prev = a_prev * x0 + s_prev * torch.randn(x0.shape, generator=g, dtype=torch.float64)
        x_t = KeptViews.renoise(x_prev, step, torch.randn(x0.shape, generator=g, dtype=torch.float64))
        assert float(x_t.mean()) == pytest.approx(a * 0.7, abs=0.02) and float(x_t.std()) == pytest.approx(s, rel=0.01)


def test_repaint_resampling_lowers_the_step_across_the_kept_border(tmp_path):
    """On the mixture prior, outpainting a panorama's right two thirds: the blended scheme leaves a
    step at the border (2.62 times the step everywhere, measured; the source itself 1.43 there), RePaint's
    resampling lowers it (1.79 with keep.resample=5). benchmarks/keep.py measures it for every sync."""
    from syncframe.images import from_pil
    from syncframe.metrics import keep_border_seam

    common = ["model=gaussian-mixture", "prompt=a photo of hills", "width=1536", "height=512", "progress=false"]
    source = generate_from_config(resolve([*common, "sync=synctweedies", "seed=0"])).images["panorama.png"]
    source.save(tmp_path / "source.png")
    kept = np.zeros((512, 1536), bool)
    kept[:, :512] = True
    Image.fromarray(kept.astype(np.uint8) * 255).save(tmp_path / "keep.png")
    border = {}
    for resample in (0, 5):
        result = generate_from_config(resolve([*common, "sync=multidiffusion", "seed=1", f"init={tmp_path / 'source.png'}",
                                               f"keep={tmp_path / 'keep.png'}", f"keep.resample={resample}"]))
        border[resample] = keep_border_seam(from_pil(result.images["panorama.png"]), torch.from_numpy(kept))
        recorded = result.metadata["metrics"]["keep_border_seam"]  # run.json's, on the image before 8 bits
        assert recorded == pytest.approx(border[resample], abs=0.02)
        assert result.metadata["metrics"]["kept_fraction"] == pytest.approx(1 / 3, abs=1e-4)
    assert border[0] > 2.3 and border[5] < 2.05 and border[5] < border[0] - 0.5, border


@pytest.fixture(scope="module")
def inpaint_denoiser():
    from syncframe.pipeline import load_denoiser

    return load_denoiser(resolve(["model=tiny-inpaint", "progress=false"]))


def test_an_inpainting_model_equals_the_inpaint_pipeline_on_one_window(inpaint_denoiser, window_files):
    """keep.scheme=model: the 9-channel UNet reads each view's mask and masked-image latents, and
    nothing is blended, as StableDiffusionInpaintPipeline does with such a UNet (given the same masked
    latents: ours are encoded with a generator of their own, theirs after the noise)."""
    from diffusers import StableDiffusionInpaintPipeline

    image_file, keep_file = window_files
    cfg = resolve(["model=tiny-inpaint", "progress=false", "width=512", "height=512", f"init={image_file}",
                   f"keep={keep_file}", "keep.scheme=model", "steps=10", "seed=4", "sync=multidiffusion"])
    ours = generate_from_config(cfg, inpaint_denoiser).canonical
    prepared = prepare(cfg)
    with torch.no_grad():
        masked = prepared.app.masked_init_latents(inpaint_denoiser, torch.Generator().manual_seed(4 + 2))
    p = inpaint_denoiser.pipe
    pipe = StableDiffusionInpaintPipeline(vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=p.unet,
                                          scheduler=p.scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    repaint = Image.fromarray(255 - np.asarray(Image.open(keep_file)))
    theirs = pipe(prepared.cfg["prompt"], image=Image.open(image_file), mask_image=repaint,
                  masked_image_latents=masked[None], strength=1.0, num_inference_steps=10,
                  guidance_scale=prepared.cfg["guidance"], generator=torch.Generator().manual_seed(4),
                  output_type="latent").images[0]
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    # keep.scheme=auto (both) keeps the region exactly; the model alone only approaches it
    kept = torch.zeros(64, 64, dtype=torch.bool)
    kept[:, :32] = True
    both = generate_from_config(resolve(["model=tiny-inpaint", "progress=false", "width=512", "height=512",
                                         f"init={image_file}", f"keep={keep_file}", "steps=10", "seed=4",
                                         "sync=multidiffusion"]), inpaint_denoiser)
    content = generate_from_config(resolve(["model=tiny-inpaint", "progress=false", "width=512", "height=512",
                                            f"init={image_file}", f"keep={keep_file}", "strength=0", "seed=4"]),
                                   inpaint_denoiser)
    assert torch.equal(both.canonical[:, kept], content.canonical[:, kept])
    assert not torch.equal(ours[:, kept], content.canonical[:, kept])


def test_inpainting_model_inputs_that_cannot_work_are_one_line_each(window_files, tmp_path):
    image_file, keep_file = window_files
    photo(512, 256).save(tmp_path / "map.png")
    mask_image(512, 256, slice(0, 256)).save(tmp_path / "half.png")
    base = ["width=512", "height=512", "progress=false"]
    cases = {
        ("model=tiny-inpaint",): "is an inpainting model: its UNet reads a mask",
        ("model=tiny", f"init={image_file}", f"keep={keep_file}", "keep.scheme=model"): "has none (a 4-channel UNet)",
        ("model=tiny-inpaint", "app=panorama360", "width=512", "height=256", f"init={tmp_path / 'map.png'}",
         f"keep={tmp_path / 'half.png'}"): "built for app=panorama so far",
    }
    for extra, words in cases.items():
        with pytest.raises(ConfigError) as error:
            prepare(resolve([*base, *extra]))
        message = str(error.value)
        assert words in message and "\n" not in message, (extra, message)


def test_a_photo_extended_sideways_keeps_the_photo_where_it_was_placed(tiny_denoiser, tmp_path):
    photo(256, 512).save(tmp_path / "photo.png")
    common = ["width=1024", "height=512", "steps=2", "seed=2", f"image={tmp_path / 'photo.png'}", "image.x=256"]
    cfg = resolve(["model=tiny", "progress=false", *common])
    result = generate_from_config(cfg, tiny_denoiser)
    app = prepare(cfg).app
    mask = app.keep_mask[0]
    assert mask[:, 32:64].eq(1).all() and mask[:, :32].eq(0).all() and mask[:, 64:].eq(0).all()  # x 256..511 px
    assert result.metadata["metrics"]["kept_fraction"] == 0.25
    from syncframe.apps.base import to_pil

    canvas = app.init_image()
    assert torch.equal(canvas[:, :, 256:512], from_pil_file(tmp_path / "photo.png"))
    to_pil(canvas).save(tmp_path / "canvas.png")
    content = run(*[o for o in common if not o.startswith("image")], f"init={tmp_path / 'canvas.png'}", "strength=0",
                  denoiser=tiny_denoiser)
    whole = app.space.project(app.keep_mask.expand(4, -1, -1))[:, :1].expand(-1, 4, -1, -1) >= 1
    # the encoder sees the whole canvas, whose mean-colour rest went through 8 bits here: near, not equal
    assert (result.views[whole] - content.views[whole]).abs().max() < 0.01
    assert (result.views[~whole] - content.views[~whole]).abs().mean() > 0.1
    # null image.x / image.y: centred
    centred = prepare(resolve(["model=tiny", "width=1024", "height=512", f"image={tmp_path / 'photo.png'}"])).app
    assert centred.placement() == (384, 0)


def from_pil_file(path):
    from syncframe.images import from_pil

    return from_pil(Image.open(path).convert("RGB"))


def test_bad_canvas_placements_are_one_line_each(tmp_path):
    photo(400, 300).save(tmp_path / "photo.png")
    base = ["model=tiny", "width=1024", "height=512", "progress=false", f"image={tmp_path / 'photo.png'}"]
    cases = {("image.x=700",): "puts the 400x300 photo past the 1024x512 canvas's edge: use image.x<=624 image.y<=212",
             ("width=512", "height=512", "image=" + str(tmp_path / "photo.png"), "image.x=200"): "use image.x<=112",
             (f"init={tmp_path / 'photo.png'}",): "give one of them",
             (f"keep={tmp_path / 'photo.png'}",): "drop keep=",
             ("image.x=-1",): "image.x"}
    photo(2000, 300).save(tmp_path / "wide.png")
    cases[(f"image={tmp_path / 'wide.png'}",)] = "larger than the 1024x512 canvas"
    for extra, words in cases.items():
        with pytest.raises(ConfigError) as error:
            prepare(resolve([*base, *extra]))
        message = str(error.value)
        assert words in message and "\n" not in message, (extra, message)
