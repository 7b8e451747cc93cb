"""Export of the three trained models for programs without Python.

``torchlite export`` writes, for the segmentation U-Net (``seg``), the nodule
classifier (``cls``) and the malignancy model (``mal``):

- ``<task>.ts.pt``: TorchScript, traced and frozen (:mod:`.torchscript`);
  what the book does, deprecated upstream, kept for the LibTorch users;
- ``<task>.pt2``: an AOTInductor package (:mod:`.aoti`), ``torch.export``
  compiled ahead of time for one device; the path PyTorch recommends today;
- ``manifest.json`` (:mod:`.manifest`): input shapes, dynamic dimensions,
  which output means what, and every constant of the analysis pipeline
  (HU window, context slices, crop size, threshold, erosion, ...), so the
  C++ program (cpp_app/) hard-codes none of them.

The command itself is :mod:`.command`.
"""
