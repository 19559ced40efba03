"""The training engine: one loop for every method, checkpoints, DDP, result records, FLOPs, the model cache.

The engine knows no particular model or data set. Main names::

    Trainer, TrainConfig, TrainResult, TrainingDiverged   # poselib.engine.trainer
    write_record, read_records, records_table             # poselib.engine.records
    archive_record, find_archived, ArchiveLookup          # (committed records of runs outside the book's build)
    count_macs, count_params                              # poselib.engine.flops
    run_dir, config_hash, is_trained, stored_metrics      # poselib.engine.cache
    init_distributed, is_main_process, all_reduce_mean    # poselib.engine.distributed
"""

from poselib.engine.cache import config_hash, is_trained, run_dir, stored_metrics
from poselib.engine.distributed import all_reduce_mean, init_distributed, is_main_process
from poselib.engine.flops import count_macs, count_params
from poselib.engine.records import (
    ArchiveLookup,
    archive_record,
    file_sha256,
    find_archived,
    read_records,
    records_table,
    write_record,
)
from poselib.engine.trainer import TrainConfig, Trainer, TrainingDiverged, TrainResult, read_metrics_log

__all__ = [
    "ArchiveLookup",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "all_reduce_mean",
    "archive_record",
    "config_hash",
    "count_macs",
    "count_params",
    "file_sha256",
    "find_archived",
    "init_distributed",
    "is_main_process",
    "is_trained",
    "read_metrics_log",
    "read_records",
    "records_table",
    "run_dir",
    "stored_metrics",
    "write_record",
]
