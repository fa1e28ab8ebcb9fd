"""Progress of an epoch: a tqdm bar on a terminal, plain lines in logs and pipes, nothing on ranks > 0."""
import shutil
import sys
import time
from typing import Callable, Optional

__all__ = ['Progress', 'format_seconds']


def format_seconds(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class Progress:
    """Reports loss, lr, images/s and ETA for ``total`` steps."""

    def __init__(self, total: int, desc: str, enabled: bool = True, interactive: Optional[bool] = None,
                 log_interval: int = 20, write: Callable[[str], None] = print):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.log_interval = max(1, log_interval)
        self.write = write
        self.start = time.perf_counter()
        self.bar = None
        if interactive is None:  # a terminal wide enough for a bar (a pty of width 0 shows none)
            interactive = sys.stdout.isatty() and shutil.get_terminal_size((0, 0)).columns >= 40
        if enabled and interactive:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False, file=sys.stdout)

    def update(self, step: int, loss: float, lr: float, images_per_s: float) -> None:
        """``step`` is 1-based; call once per step."""
        if not self.enabled:
            return
        stats = f'loss {loss:.4f}  lr {lr:.2e}  {images_per_s:.0f} img/s'
        if self.bar is not None:
            self.bar.set_postfix_str(stats, refresh=False)
            self.bar.update(1)
        elif step % self.log_interval == 0 or step == self.total:
            elapsed = time.perf_counter() - self.start
            eta = elapsed / step * (self.total - step)
            self.write(f'{self.desc}  step {step}/{self.total}  {stats}  eta {format_seconds(eta)}')

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
