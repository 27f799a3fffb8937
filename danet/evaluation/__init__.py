from .sem_seg_evaluation import (
    CityscapesOfficialEvaluator,
    SemSegReportEvaluator,
    build_sem_seg_evaluators,
    comparison_table,
    summary_table,
)
from .attention_pictures import attention_pictures_to_tensorboard
