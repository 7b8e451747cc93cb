"""`torchlite train cls|seg|mal`: the book's three training applications.

- :mod:`config`: the per-task book defaults;
- :mod:`tasks`: model, datasets, loss and metrics wiring per task;
- :mod:`loop`: the epoch loop shared by the three tasks;
- :mod:`metrics`: classification and segmentation metrics, in torch;
- :mod:`checkpoint`: last/best checkpoints, RNG states, resume;
- :mod:`logging_tb`: TensorBoard scalars, PR curves, histograms, overlays;
- :mod:`distributed`: torchrun / DistributedDataParallel helpers;
- :mod:`command`: the command line.
"""
