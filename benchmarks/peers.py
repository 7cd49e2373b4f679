"""Source shared by the benchmarks that run peer libraries in subprocesses (prepended to their code strings)."""

#: kronfluence's task for softmax classification: summed cross-entropy, and the same loss with labels
#: sampled from the model when kronfluence fits its (true-Fisher) factors; the measurement is the loss.
KRONFLUENCE_TASK = """
import torch.nn.functional as F
from kronfluence.task import Task
class Classification(Task):
    def compute_train_loss(self, batch, model, sample=False):
        x, y = batch
        z = model(x)
        if sample:
            with torch.no_grad():
                y = torch.multinomial(torch.softmax(z, -1), 1).flatten()
        return F.cross_entropy(z, y, reduction="sum")
    def compute_measurement(self, batch, model):
        x, y = batch
        return F.cross_entropy(model(x), y, reduction="sum")
"""

#: dattri's TracIn (grad-dot over all parameters, its default 512-d projection) over ``net``, the
#: training arrays ``Xtr, ytr`` and the queries ``Xte, pred``; ``t0`` is taken before the set-up.
DATTRI_TRACIN = """
from torch.utils.data import DataLoader, TensorDataset
from dattri.task import AttributionTask
from dattri.algorithm.tracin import TracInAttributor
def loss(params, data):
    x, y = data
    z = torch.func.functional_call(net, params, (x.unsqueeze(0),))
    return torch.nn.functional.cross_entropy(z, y.unsqueeze(0))
t0 = time.perf_counter()
task = AttributionTask(loss_func=loss, model=net, checkpoints=net.state_dict())
attributor = TracInAttributor(task, weight_list=torch.ones(1), normalized_grad=False)
train = DataLoader(TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr)), batch_size=256)
test = DataLoader(TensorDataset(torch.as_tensor(Xte), torch.as_tensor(pred)), batch_size=256)
"""
