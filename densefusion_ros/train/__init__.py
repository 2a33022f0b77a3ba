"""Training: the published DenseFusion losses, BOP training samples and the ``train`` command.

* :mod:`.losses`: estimator and refiner losses (ADD / ADD-S, batched).
* :mod:`.dataset`: pose and segmentation samples built with :func:`densefusion_ros.sampling.prepare_instance`.
* :mod:`.trainer`: ``densefusion-ros train --stage {segmenter,estimator,refiner}``: the loop,
  the schedule (:mod:`.state`), DDP (:mod:`.distributed`) and the checkpoints; settings in
  :mod:`.config` (:class:`~.config.TrainConfig`), one class per stage in :mod:`.stages`.
* :mod:`.toy`: a tiny synthetic BOP dataset for smoke tests.
"""
