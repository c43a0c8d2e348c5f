"""DataLoaders whose errors read as the dataset's own message."""

from collections.abc import Iterator

from torch.utils.data import DataLoader

from reid.errors import DataError


class WorkerErrorLoader(DataLoader):
    """A DataLoader that re-raises a worker's `DataError` with the worker's own message.

    PyTorch re-raises a worker's exception with the worker's whole traceback pasted into the message; the
    CLI would print that instead of the one paragraph that names the file. Other errors are bugs and keep
    their traceback.
    """

    def __iter__(self) -> Iterator:
        try:
            yield from super().__iter__()
        except DataError as error:
            raise DataError(worker_message(error)) from None


def worker_message(error: DataError) -> str:
    """The original message of an error re-raised from a DataLoader worker (unchanged if not from one)."""
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    text = str(error)
    return text.rpartition(prefix)[2].strip() if text.startswith("Caught ") and prefix in text else text
