"""Files -> tensors: reading images and masks (imageio), pairing and splitting (splits), the data
check (check), cached datasets (datasets), joint augmentation (transforms) and the demo set (demo)."""
