from sesemi_torch import cli
from tests.dataset_training import DatasetTrainingContract


class TestTorchDatasetTraining(DatasetTrainingContract):
    main = staticmethod(cli.main)
