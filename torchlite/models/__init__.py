"""The book's networks: the nodule classifier (also the malignancy model) and the U-Net."""

from torchlite.models.luna import LunaBlock, LunaModel
from torchlite.models.unet import UNet, UNetWrapper

__all__ = ["LunaBlock", "LunaModel", "UNet", "UNetWrapper"]
