"""A task with a Docker sandbox (for the test against a Docker daemon that never answers).

inspect checks the Docker engine first (``docker version --format json``, traced by
inspect itself as a ``Subprocess``): with a silent daemon that call hangs.
"""

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.solver import generate


@task
def docker_sandbox():
    return Task(
        dataset=[Sample(input="Say hello.", target="hello")],
        solver=[generate()],
        sandbox="docker",
    )
