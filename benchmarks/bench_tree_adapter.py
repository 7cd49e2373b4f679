"""Adapter time vs the booster's own predict: 500-tree boosters, 10,000 rows (one run, best of 3)."""
import time, numpy as np, xgboost as xgb, lightgbm as lgb
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from representer.models.trees import TreeEnsemble

def best(f, r=3):
    ts = []
    for _ in range(r):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)

X, y = make_classification(n_samples=12000, n_features=20, n_informative=10, random_state=0)
Xtr, Xte = X[:2000], X[2000:]
ytr = y[:2000]
xm = xgb.XGBClassifier(n_estimators=500, max_depth=4, n_jobs=2).fit(Xtr, ytr)
lm = lgb.LGBMClassifier(n_estimators=500, num_leaves=15, n_jobs=2, verbose=-1).fit(Xtr, ytr)
hm = HistGradientBoostingClassifier(max_iter=500, early_stopping=False).fit(Xtr, ytr)
bst = xm.get_booster()
rows = []
for name, model, own in [
    ("xgboost", xm, lambda: bst.predict(xgb.DMatrix(Xte), output_margin=True)),
    ("lightgbm", lm, lambda: lm.predict(Xte, raw_score=True)),
    ("sklearn-hgb", hm, lambda: hm.decision_function(Xte)),
]:
    t_own = best(own)
    for kind in ("margins", "leaves"):
        a = TreeEnsemble(model, features=kind)
        f = (lambda a=a: a.features(Xte)) if kind == "margins" else (lambda a=a: a.features_sparse(Xte))
        t_ad = best(f)
        rows.append((name, kind, a.n_trees, t_own, t_ad, t_ad / t_own))
    if name == "xgboost":
        t_loop = best(lambda: np.column_stack([bst.predict(xgb.DMatrix(Xte), output_margin=True, iteration_range=(m, m + 1)) for m in range(500)]), r=1)
        rows.append((name, "margins via 500 iteration_range calls", 500, t_own, t_loop, t_loop / t_own))
print(f"{'model':12s} {'features':40s} {'M':>4s} {'own predict s':>14s} {'adapter s':>10s} {'ratio':>7s}")
for r in rows:
    print(f"{r[0]:12s} {r[1]:40s} {r[2]:4d} {r[3]:14.4f} {r[4]:10.4f} {r[5]:7.2f}")
