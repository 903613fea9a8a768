"""The training machinery: one loop (train.py), many models trained as one (train_many.py), batch
augmentation on the device (augment.py)."""
