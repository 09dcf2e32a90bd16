"""Break the method on purpose, one line at a time, and see which test notices.

    python scripts/mutate.py                 # every mutation; a Markdown table on stdout
    python scripts/mutate.py --only sync-x0  # one (or several, comma-separated) by id

Each mutation replaces one exact line fragment of the package (it must occur once), runs the
tests that should notice (``pytest -x``: the first failure is enough), and restores the file,
even on Ctrl-C. A mutation no test kills is a hole in the suite; docs/design.md records the table.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Mutation:
    id: str
    file: str
    old: str
    new: str
    what: str
    tests: list[str]


CORE = ["tests/test_sampler.py", "tests/test_families.py"]
MUTATIONS = [
    # -- the loop's arithmetic ------------------------------------------------------------------
    Mutation("tweedie-sign", "syncframe/samplers.py", "return (x_t - step.s * eps) / step.a",
             "return (x_t + step.s * eps) / step.a", "Tweedie's formula with the wrong sign of ε", CORE),
    Mutation("eps-from-x0", "syncframe/samplers.py", "return (x_t - step.a * x0) / step.s",
             "return (x_t - step.a * x0) / step.a", "ε recovered from x0 divided by a instead of s",
             ["tests/test_sampler.py", "tests/test_analytic.py"]),
    Mutation("v-prediction", "syncframe/models/denoiser.py", "return a * x - s * out, s * x + a * out",
             "return a * x + s * out, s * x + a * out", "x0 from a v-prediction with the wrong sign",
             ["tests/test_sampler.py"]),
    Mutation("cfg", "syncframe/models/denoiser.py", "return uncond + self.guidance * (cond - uncond)",
             "return cond + self.guidance * (cond - uncond)", "classifier-free guidance from the wrong base",
             ["tests/test_families.py"]),
    # -- the samplers' updates ------------------------------------------------------------------
    Mutation("ddim-eta", "syncframe/samplers.py", "x_prev + step.noise * noise", "x_prev - 0.5 * step.noise * noise",
             "DDIM's fresh noise at half its standard deviation", ["tests/test_sampler.py"]),
    Mutation("ddim-direction", "syncframe/samplers.py",
             "x_prev = step.a_prev * x0 + math.sqrt(max(step.s_prev**2 - step.noise**2, 0.0)) * eps",
             "x_prev = step.a_prev * x0 + math.sqrt(max(step.s_prev**2 - 2 * step.noise**2, 0.0)) * eps",
             "DDIM's direction term with the wrong variance", ["tests/test_sampler.py"]),
    Mutation("dpm-second-order", "syncframe/samplers.py", "data = x0 + (x0 - memory[\"x0\"]) * (h / (2 * h_prev))",
             "data = x0 + (x0 - memory[\"x0\"]) * (h / (3 * h_prev))", "DPM++ 2M's second-order coefficient",
             ["tests/test_sampler.py", "tests/test_analytic.py"]),
    Mutation("deterministic-update", "syncframe/samplers.py", "return step.a_prev * x0 + step.s_prev * eps",
             "return step.a_prev * x0 + step.s * eps", "Euler / flow-Euler step to the wrong noise level",
             ["tests/test_sampler.py", "tests/test_analytic.py"]),
    Mutation("flow-sigmas", "syncframe/samplers.py",
             "steps = [Step(i, float(t), 1 - sig[i], sig[i], 1 - sig[i + 1], sig[i + 1], 0.0, len(scheduler.timesteps))",
             "steps = [Step(i, float(t), 1 - sig[i], sig[i], 1 - sig[i], sig[i + 1], 0.0, len(scheduler.timesteps))",
             "flow schedule's next coefficient a' off by one step", ["tests/test_sampler.py", "tests/test_analytic.py"]),
    # -- the three methods ----------------------------------------------------------------------
    Mutation("multidiffusion", "syncframe/syncs/averaging.py", "return self.space.sync(x_prev)  # MultiDiffusion, eq. 5",
             "return x_prev  # MultiDiffusion, eq. 5", "MultiDiffusion averages nothing",
             ["tests/test_sampler.py"]),
    Mutation("synctweedies", "syncframe/syncs/averaging.py",
             "x0 = self.space.sync(x0)  # SyncTweedies: each view steps from the synchronized x0",
             "x0 = x0  # SyncTweedies: each view steps from the synchronized x0", "SyncTweedies averages nothing",
             ["tests/test_sampler.py"]),
    Mutation("synctweedies-eps", "syncframe/syncs/averaging.py", "return x0, eps_from_x0(x_t, x0, step)",
             "return x0, eps", "SyncTweedies keeps each view's own ε beside the synchronized x0",
             ["tests/test_sampler.py"]),
    Mutation("until-boundary", "syncframe/syncs/averaging.py", "return step.fraction() < self.until",
             "return step.fraction() <= self.until", "sync.until one step late", ["tests/test_sampler.py"]),
    Mutation("syncdiffusion-sign", "syncframe/syncs/syncdiffusion.py", "return x_t - w * self.loss_gradient(x_t, step)",
             "return x_t + w * self.loss_gradient(x_t, step)", "SyncDiffusion climbs the LPIPS loss",
             ["tests/test_syncdiffusion.py"]),
    Mutation("syncdiffusion-decay", "syncframe/syncs/syncdiffusion.py", "w = self.weight * self.decay ** step.index",
             "w = self.weight * self.decay ** (step.index + 1)", "SyncDiffusion's step decays one step early",
             ["tests/test_syncdiffusion.py"]),
    Mutation("syncsde-sign", "syncframe/syncs/syncsde.py", "return x_prev - scale * seen * (x_t - target)",
             "return x_prev + scale * seen * (x_t - target)", "SyncSDE pushes each view away from the views before it",
             ["tests/test_syncsde.py"]),
    Mutation("syncsde-previous", "syncframe/syncs/syncsde.py", "return before & ~torch.ones_like(before).tril(-2)",
             "return before", "SyncSDE's wide-image windows pulled to every window before, not the one before",
             ["tests/test_syncsde.py"]),
    Mutation("syncsde-gamma", "syncframe/syncs/syncsde.py", "gamma = step.a_prev / step.a - step.s_prev / step.s",
             "gamma = step.a_prev / step.a", "SyncSDE's γ_t without its noise term", ["tests/test_syncsde.py"]),
    # -- each space's adjoint and weights ------------------------------------------------------------
    Mutation("panorama-weights", "syncframe/spaces/panorama.py",
             "return window_weights(self.weights, self.window, self.num_views, like, self.sigma)",
             'return window_weights("fading", self.window, self.num_views, like, self.sigma)',
             "panorama windows weighted (fading) instead of MultiDiffusion's mean", ["tests/test_panorama_space.py"]),
    Mutation("gaussian-centre", "syncframe/spaces/base.py", "g = torch.exp(-((x - (size - 1) / 2) / size)",
             "g = torch.exp(-((x - size / 2) / size)", "Mixture of Diffusers' weights centred half a latent off",
             ["tests/test_window_weights.py"]),
    Mutation("gather-adjoint", "syncframe/spaces/base.py",
             "out.index_add_(1, index.to(x.device).reshape(-1), x.transpose(0, 1).reshape(c, -1))",
             "out.index_add_(1, index.to(x.device).reshape(-1).flip(0), x.transpose(0, 1).reshape(c, -1))",
             "the index-based adjoint (panorama, nearest equirect, mesh) scatters to the wrong texels",
             ["tests/test_panorama_space.py", "tests/test_equirect.py", "tests/test_mesh.py"]),
    Mutation("equirect-weights", "syncframe/spaces/equirect.py",
             "return window_weights(self.weights, self.view_size, self.num_views, like, self.sigma)",
             'return window_weights("uniform", self.view_size, self.num_views, like, self.sigma)',
             "the 360 views averaged with uniform weights", ["tests/test_equirect.py"]),
    Mutation("mesh-cosine", "syncframe/spaces/mesh_uv.py",
             "self.weights = torch.where(mask, cosine.float().clamp_min(1e-3) ** cosine_power, torch.zeros_like(cosine))",
             "self.weights = torch.where(mask, torch.ones_like(cosine), torch.zeros_like(cosine))",
             "mesh texels averaged without the view-angle weights", ["tests/test_mesh.py"]),
    Mutation("anagram-sign", "syncframe/spaces/anagram.py",
             "signed = (x * self.signs.to(x.device, x.dtype)[:, None, None, None]).transpose(0, 1).reshape(c, -1)",
             "signed = x.transpose(0, 1).reshape(c, -1)", "the anagram's adjoint forgets the negation",
             ["tests/test_anagram.py"]),
    Mutation("splat-alpha", "syncframe/spaces/splats.py", "return self.project(self.unproject(x)) + (1 - a) * x",
             "return self.project(self.unproject(x)) + a * x", "a splat view's background share taken from the splats",
             ["tests/test_splat_app.py"]),
    Mutation("region-background", "syncframe/regions.py", "background = (1 - masks.sum(0)).clamp_min(0)",
             "background = masks.sum(0).clamp(0, 1)", "the background region weighted where the regions are",
             ["tests/test_regions.py"]),
    # -- the model families ---------------------------------------------------------------------------
    Mutation("sdxl-time-ids", "syncframe/models/compat.py",
             "return pipe._get_add_time_ids(size, (0, 0), size, dtype=dtype, text_encoder_projection_dim=projection_dim)",
             "return pipe._get_add_time_ids(size, (8, 8), size, dtype=dtype, text_encoder_projection_dim=projection_dim)",
             "SDXL conditioned on a crop at (8, 8)", ["tests/test_compat.py", "tests/test_families.py"]),
    Mutation("flux-guidance", "syncframe/models/flux.py",
             "guidance = (torch.full((b,), self.guidance, device=x.device, dtype=torch.float32)",
             "guidance = (torch.full((b,), 2 * self.guidance, device=x.device, dtype=torch.float32)",
             "FLUX's embedded guidance doubled", ["tests/test_families.py"]),
    Mutation("sd3-timestep", "syncframe/models/sd3.py",
             "t = torch.full((x.shape[0],), step.t, device=x.device, dtype=torch.float32)",
             "t = torch.full((x.shape[0],), step.t / 1000, device=x.device, dtype=torch.float32)",
             "SD3's timestep scaled like FLUX's", ["tests/test_families.py"]),
    # -- the methods that came after ----------------------------------------------------------------
    Mutation("cross-view-average", "syncframe/models/cross_view.py", "out = (out + plan.weight * seen) / (1 + plan.weight)",
             "out = (out + plan.weight * out) / (1 + plan.weight)", "cross-view attention's reference view not read",
             ["tests/test_cross_view.py"]),
    Mutation("cross-view-threshold", "syncframe/models/cross_view.py",
             "self.weight = 1.0 if t > self.train_steps * (1 - self.until)",
             "self.weight = 1.0 if t < self.train_steps * (1 - self.until)",
             "the reference read late instead of early", ["tests/test_cross_view.py"]),
    Mutation("spot-flush", "syncframe/syncs/spotdiffusion.py", "(a, b - a, min(a, size - window))", "(a, b - a, a)",
             "a border cell's window not flush with the canvas border", ["tests/test_spotdiffusion.py"]),
    Mutation("spot-wrap", "syncframe/syncs/spotdiffusion.py", "return [((offset + k * window) % size,",
             "return [((offset + k * window + 1) % size,", "wrapped cells shifted off their windows",
             ["tests/test_spotdiffusion.py"]),
    Mutation("stoch-last-clean", "syncframe/syncs/stochsync.py", "after = (1.0, 0.0) if t_next == 0",
             "after = (1.0, 0.0) if t_next < 0", "a trajectory that stops at the ᾱ₀ level, short of x0",
             ["tests/test_stochsync.py"]),
    Mutation("stoch-keep-unseen", "syncframe/spaces/base.py",
             "return weighted_mean(space.view_sum(w * x), space.view_sum(w.expand_as(x)), z.to(x.dtype))",
             "return weighted_mean(space.view_sum(w * x), space.view_sum(w.expand_as(x)), 0 * z.to(x.dtype))",
             "a view set's fit forgets what it does not see", ["tests/test_stochsync.py"]),
    # -- the redesign's seams and the newer code's (issue 38) -----------------------------------------
    Mutation("cross-view-wrap", "syncframe/syncs/averaging.py",
             'neighbours = ring(space.num_views) if options.wrap == "always" else space.capability("neighbours")()',
             'neighbours = space.capability("neighbours")()', "sync.wrap=always ignored: the space's neighbours, "
             "not the official ring", ["tests/test_cross_view.py"]),
    Mutation("stoch-same-noise", "syncframe/syncs/stochsync.py",
             "return torch.randn(like.shape, generator=self.generator, dtype=like.dtype).to(like.device)",
             "return torch.randn(like.shape, generator=torch.Generator().manual_seed(0), dtype=like.dtype).to(like.device)",
             "StochSync draws the same noise every step: no fresh noise", ["tests/test_stochsync.py"]),
    Mutation("pipeline-guidance", "syncframe/sync_pipeline.py", '("guidance", guidance_scale)', '("guidance", None)',
             "SyncPipeline drops guidance_scale", ["tests/test_own_models.py"]),
    Mutation("canonical-views", "syncframe/syncs/averaging.py",
             "return CanonicalState(z, self.space.project(z), state.memory)", "return CanonicalState(z, state.x, state.memory)",
             "canonical denoising shows the model its first views every step", ["tests/test_sampler.py"]),
    Mutation("bootstrap-dropped", "syncframe/spaces/regions.py",
             "return self.inner.before_model(self.bootstrap(x_t, step), step)", "return self.inner.before_model(x_t, step)",
             "region bootstrapping wraps the method but does nothing", ["tests/test_regions.py"]),
    Mutation("app-sync-defaults", "syncframe/config.py",
             'sections["sync"].update(copy.deepcopy(app_entry.facts.sync_defaults.get(sync_name, {})))',
             'sections["sync"].update({})', "an app's published settings for a method not applied",
             ["tests/test_stochsync.py"]),
    Mutation("spot-offsets", "syncframe/syncs/spotdiffusion.py",
             "draw = torch.randint(0, self.window, (2,), generator=self.generator).tolist()", "draw = [0, 0]",
             "SpotDiffusion's windows never shift", ["tests/test_spotdiffusion.py"]),
    Mutation("stoch-view-sets", "syncframe/syncs/stochsync.py",
             "return torch.arange(self.space.num_views) % sets == step.index % sets",
             "return torch.arange(self.space.num_views) % sets == 0", "StochSync's view sets never alternate",
             ["tests/test_stochsync.py"]),
    Mutation("cross-view-batch", "syncframe/models/cross_view.py",
             "model.batch_size = max(1, len(model.mine))  # neighbours must be in the batch to be read",
             "model.batch_size = model.batch_size", "cross-view attention's views split over model calls",
             ["tests/test_cross_view.py"]),
    Mutation("settle-unapplied", "syncframe/plan.py", "options = options.model_copy(update=settled)",
             "options = options", "a method built from its section before its auto options are settled",
             ["tests/test_cross_view.py"]),
]


def run(mutation: Mutation) -> tuple[bool, str, float]:
    """(killed, the test whose assertion failed or why nothing counts, seconds). Only a failed
    assertion of a named test kills a mutation: an import error, a missing optional dependency or a
    test that raised something else is reported, not counted."""
    path = ROOT / mutation.file
    original = path.read_text(encoding="utf-8")
    if original.count(mutation.old) != 1:
        raise SystemExit(f"{mutation.id}: the fragment occurs {original.count(mutation.old)} times in {mutation.file}")
    clock = time.perf_counter()
    try:
        path.write_text(original.replace(mutation.old, mutation.new), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *mutation.tests],
                              cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "1000"})  # else pytest cuts the reason off long ids
    finally:
        path.write_text(original, encoding="utf-8")
    failed = re.findall(r"^FAILED (.+?) - (.*)$", done.stdout, flags=re.M)  # parametrized ids may hold spaces
    # an assertion: `assert`, an assert_* helper's AssertionError, or pytest's own (DID NOT RAISE, pytest.fail)
    asserted = [test for test, reason in failed if reason.startswith(("AssertionError", "assert", "Failed:"))]
    if asserted:
        return True, asserted[0], time.perf_counter() - clock
    lines = done.stdout.strip().splitlines()
    why = f"{failed[0][0]} raised {failed[0][1]}" if failed else (lines[-1] if lines else done.stderr.strip()[-200:])
    return False, why, time.perf_counter() - clock


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutation ids")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.id in args.only.split(",")]
    print("| mutation | what breaks | killed by | seconds |\n| --- | --- | --- | --- |", flush=True)
    survivors = []
    for mutation in chosen:
        killed, by, seconds = run(mutation)
        if not killed:
            survivors.append(mutation.id)
        print(f"| `{mutation.id}` | {mutation.what} | {'`' + by + '`' if killed else '**survived**: ' + by} | "
              f"{seconds:.0f} |", flush=True)
    print(f"\n{len(chosen) - len(survivors)} of {len(chosen)} killed" + (f"; survived: {', '.join(survivors)}"
                                                                       if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
