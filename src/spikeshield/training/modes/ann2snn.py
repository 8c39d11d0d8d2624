"""ANN-to-SNN conversion with robust-max normalisation (Rueckauer et al., Front. Neurosci. 2017)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from spikeshield import validate
from spikeshield.training.conversion import ConversionMode
from spikeshield.training.modes import register_training_mode

if TYPE_CHECKING:
    from spikeshield.data import ArrayDataset
    from spikeshield.models import SpikingModel
    from spikeshield.training.config import TrainConfig


@register_training_mode("ann2snn")
class ANNToSNN(ConversionMode):
    """Train the ReLU twin of the run's network (``neuron = relu``, T = 1) with plain
    backpropagation, then convert it into the run's soft-reset IF neurons at T = N with
    robust-max normalisation: λ_l = the ``percentile``-th percentile of ReLU layer l's
    activations on ``calibration_samples`` training images (a fixed subset drawn with the run's
    seed), folded into the weights (:func:`spikeshield.models.conversion.ann_to_snn`).

    Args:
        percentile: p of the robust maximum (99.9; 100 = max-norm, Diehl et al. 2015).
        calibration_samples: training images used to find λ.
        threshold_scale: θ; thresholds act as θ·λ_l.
        sweep, sweep_v_init: time steps at which the converted network's test accuracy is also
            measured, and other start potentials (fractions of V_th) to measure them with.
    """

    source_neuron = "relu"
    method = "ann2snn"

    def __init__(
        self,
        threshold_scale: float = 1.0,
        sweep: Sequence[int] | None = None,
        sweep_v_init: Sequence[float] | None = None,
        percentile: float = 99.9,
        calibration_samples: int = 1000,
    ) -> None:
        super().__init__(threshold_scale, sweep, sweep_v_init)
        self.percentile = validate.in_range("percentile", percentile, 0.0, 100.0, low_open=True)
        self.calibration_samples = validate.positive_int("calibration_samples", calibration_samples)

    def source_options(self, config: TrainConfig) -> dict[str, Any]:
        return {}

    def convert(
        self, source: SpikingModel, config: TrainConfig, train_set: Callable[[], ArrayDataset]
    ) -> tuple[SpikingModel, dict[str, Any]]:
        from spikeshield.models.conversion import ann_to_snn

        calibration = train_set().subset(self.calibration_samples, seed=config.seed)
        model, lambdas = ann_to_snn(
            source,
            calibration,
            config.time_steps,
            percentile=self.percentile,
            threshold_scale=self.threshold_scale,
            neuron_options=config.neuron_options,
            batch_size=config.eval_batch_size,
        )
        return model, {
            "threshold_scale": self.threshold_scale,
            "percentile": self.percentile,
            "calibration_samples": len(calibration),
            "lambdas": lambdas,
        }
