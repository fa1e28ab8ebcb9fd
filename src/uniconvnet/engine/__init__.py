"""Training engine: one trainer for every task, classification on top, recipes, evaluation and prediction."""
from .artifacts import TrainedModelInfo, load_trained_model, plot_curves, read_model_config, write_model_config
from .classification import ClassificationTask, build_classification_model, build_datasets, train
from .config import TrainConfig
from .convert import convert_checkpoint
from .distributed import DistributedContext, init_distributed
from .inference import evaluate_checkpoint, predict
from .recipes import RECIPES, list_recipes, make_train_config, recipe_values
from .run import RunParts, run_training
from .trainer import Task, Trainer, TrainingDiverged, TrainingInterrupted, effective_batch_and_lr, evaluate_task

__all__ = ['ClassificationTask', 'DistributedContext', 'RECIPES', 'RunParts', 'Task', 'TrainConfig',
           'TrainedModelInfo', 'Trainer', 'TrainingDiverged', 'TrainingInterrupted', 'build_classification_model',
           'build_datasets', 'convert_checkpoint', 'effective_batch_and_lr', 'evaluate_checkpoint', 'evaluate_task',
           'init_distributed', 'list_recipes', 'load_trained_model', 'make_train_config', 'plot_curves', 'predict',
           'read_model_config', 'recipe_values', 'run_training', 'train', 'write_model_config']
