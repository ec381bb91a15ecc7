"""The errors a user can cause and fix (bad input, not harness bugs): printed without a traceback."""

from bench.codec import BitstreamError
from bench.data import DatasetError
from bench.device import DeviceError
from bench.registry import RegistryError
from bench.sandbox.policy import SandboxUnavailable
from bench.submission import SubmissionError
from bench.train.recipe import RecipeError

USER_ERRORS = (BitstreamError, DatasetError, DeviceError, RegistryError, SubmissionError, RecipeError,
               FileNotFoundError, SandboxUnavailable)
