"""Deployment: predicting image files, Triton model repositories, serving."""
