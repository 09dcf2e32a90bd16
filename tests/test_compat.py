"""What syncframe needs of diffusers' private latent bookkeeping (syncframe/models/compat.py): if a
diffusers release changes one of these, this fails before any family's output does."""
import torch

from syncframe.models.compat import flux_image_ids, flux_pack, flux_unpack, sdxl_time_ids


def test_flux_packing_is_2x2_patches_and_unpacking_inverts_it():
    latents = torch.randn(2, 16, 8, 6)
    tokens = flux_pack(latents)
    assert tokens.shape == (2, 4 * 3, 64)
    # token (row 1, col 2) holds the 2x2 patch at latent rows 2-3, cols 4-5, channel-major
    assert torch.equal(tokens[0, 1 * 3 + 2], latents[0, :, 2:4, 4:6].reshape(-1))
    assert torch.equal(flux_unpack(tokens, 8 * 8, 6 * 8, 8), latents)


def test_flux_image_ids_are_the_tokens_rows_and_columns():
    ids = flux_image_ids(1, 4, 3, "cpu", torch.float32)
    assert ids.shape == (12, 3)
    assert torch.equal(ids[:, 0], torch.zeros(12))
    assert torch.equal(ids[:, 1], torch.arange(4).repeat_interleave(3).float())
    assert torch.equal(ids[:, 2], torch.arange(3).repeat(4).float())


def test_sdxl_time_ids_are_size_crop_and_target_size(twins):
    ids = sdxl_time_ids(twins["tiny-sdxl"].pipe, (256, 256), torch.float32, 32)
    assert ids.tolist() == [[256.0, 256.0, 0.0, 0.0, 256.0, 256.0]]
