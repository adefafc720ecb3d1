"""The code MLflow logs as the model of every registered version ("models from code").

``tracking.train_and_log`` passes this file's path as ``python_model``; MLflow stores the file
beside the bundle and runs it when ``mlflow.pyfunc.load_model`` loads a version. It only imports
:class:`recsys.tracking.RecsysPyfunc` from the installed package and hands MLflow an instance: no
pickled object is stored, so loading a version never unpickles code. The bundle itself loads
through :meth:`recsys.models.bundle.ModelBundle.load` (tensors and plain values only).
"""
from mlflow.models import set_model

from recsys.tracking import RecsysPyfunc

set_model(RecsysPyfunc())
