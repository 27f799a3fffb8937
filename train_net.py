#!/usr/bin/env python
"""Train and evaluate DANet on Cityscapes with detectron2's DefaultTrainer.

    python train_net.py --config-file configs/r50.yaml --num-gpus 8
    torchrun --nproc_per_node 8 train_net.py --config-file configs/r50.yaml     # or srun, one task per GPU
    python train_net.py --config-file configs/r50.yaml --eval-only MODEL.WEIGHTS model.pth
"""
import logging
import os

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup
from detectron2.engine.hooks import PeriodicWriter
from detectron2.evaluation import DatasetEvaluators, verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from danet.config import load_config
from danet.data import build_test_mapper, build_train_mapper
from danet.engine import (
    adapt_to_device,
    build_inference_model,
    build_lr_scheduler,
    build_optimizer,
    build_preemption_hook,
    check_num_gpus,
    launch,
    resume_requested,
    shield_data_workers,
    trainer_defaults,
)
from danet.errors import exit_on_input_error
from danet.evaluation import build_sem_seg_evaluators, comparison_table, summary_table
from danet.evaluation.attention_pictures import attention_pictures_to_tensorboard
from danet.modeling import build_test_time_segmentor

logger = logging.getLogger("danet")


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        with trainer_defaults(cfg):
            super().__init__(cfg)

    def build_hooks(self):
        hooks = super().build_hooks()
        for hook in hooks:
            if isinstance(hook, PeriodicWriter):  # LOG_PERIOD instead of its fixed 20 (no public setter)
                hook._period = self.cfg.LOG_PERIOD
        # Last: a stop on a signal comes after the iteration's checkpoint, evaluation and metrics.
        return hooks + [build_preemption_hook(self.cfg, self.checkpointer)]

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        if len(cfg.DATASETS.TEST) > 1:  # one folder per dataset, so none overwrites another's files
            output_folder = os.path.join(output_folder, dataset_name)
        return DatasetEvaluators(build_sem_seg_evaluators(cfg, dataset_name, output_folder))

    @classmethod
    def build_train_loader(cls, cfg):
        return shield_data_workers(build_detection_train_loader(cfg, mapper=build_train_mapper(cfg)), cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return shield_data_workers(build_detection_test_loader(cfg, dataset_name, mapper=build_test_mapper(cfg)), cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        # detectron2's SGD; the head at SOLVER.HEAD_LR_FACTOR times the learning rate.
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        # detectron2's schedulers, deeplab's WarmupPolyLR (the DANet authors' policy) and
        # mmsegmentation's PolyLR; each resumes on the config's schedule.
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        if not cfg.DATASETS.TEST:  # e.g. the evaluation hook at the end of training
            logger.info("DATASETS.TEST is empty: evaluation skipped.")
            return {}
        # Sliding window when TEST.SLIDING_WINDOW.ENABLED; the model itself otherwise.
        with attention_pictures_to_tensorboard(cfg, model):  # TEST.ATTENTION_PICTURES
            results = super().test(cfg, build_test_time_segmentor(cfg, model), evaluators)
        for dataset_name, result in cls.by_dataset(cfg, results).items():
            if "sem_seg" in result:
                logger.info(f"Results on {dataset_name}:\n{summary_table(result['sem_seg'])}")
        return results

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """Evaluate with TEST.AUG's scales and flip; results laid out as test()'s,
        with each task key suffixed "_TTA"."""
        logger.info("Running inference with test-time augmentation ...")
        evaluators = [
            cls.build_evaluator(cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA"))
            for name in cfg.DATASETS.TEST
        ]
        results = super().test(cfg, build_test_time_segmentor(cfg, model, augment=True), evaluators)
        for result in cls.by_dataset(cfg, results).values():
            for key in list(result):
                result[key + "_TTA"] = result.pop(key)
        return results

    @staticmethod
    def by_dataset(cfg, results):
        """Results keyed by dataset: DefaultTrainer.test un-nests them for a single dataset."""
        return results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}


def setup(args):
    cfg = load_config(args.config_file, args.opts)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="danet")
    adapt_to_device(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    with exit_on_input_error("train_net.py"):
        cfg = setup(args)
        if args.eval_only:
            return evaluate(cfg, args)
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=resume_requested(cfg, args.resume))
        return trainer.train()


def evaluate(cfg, args):
    model = build_inference_model(cfg, resume=args.resume)
    results = Trainer.test(cfg, model)
    if cfg.TEST.AUG.ENABLED:
        augmented = Trainer.by_dataset(cfg, Trainer.test_with_TTA(cfg, model))
        for name, result in Trainer.by_dataset(cfg, results).items():
            if "sem_seg" in result:
                runs = {"plain": result["sem_seg"], "TTA": augmented[name]["sem_seg_TTA"]}
                logger.info(f"Plain and augmented results on {name}:\n{comparison_table(runs)}")
            result.update(augmented[name])
    if comm.is_main_process():
        verify_results(cfg, results)
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    with exit_on_input_error("train_net.py"):
        # Check the config and the devices before any process is launched.
        check_num_gpus(load_config(args.config_file, args.opts), args.num_gpus)
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
