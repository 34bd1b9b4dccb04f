from sesemi_jax import cli
from tests.dataset_training import DatasetTrainingContract


class TestJaxDatasetTraining(DatasetTrainingContract):
    main = staticmethod(cli.main)
