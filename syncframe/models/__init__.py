"""The denoisers: pretrained diffusers families, offline random-weight twins, analytic priors, perceptual nets."""
