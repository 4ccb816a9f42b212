"""Speed and memory, measured by the stage that loaded the model (the report only writes them up)."""
import resource
import time


def latency(predict, items, repeats=20):
    """Seconds per item of predict(items[i:i+1]) one item at a time, and of predict(items) in one batch: for an
    encoder (texts -> embeddings), a probe (embeddings -> scores) or the adapter (texts -> scores)."""
    n = items.shape[0] if hasattr(items, "shape") else len(items)     # a list, an array or a sparse matrix
    predict(items[:1])                             # warm-up: first call pays one-off allocations
    start = time.perf_counter()
    for i in range(repeats):
        predict(items[i % n:i % n + 1])
    single = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    predict(items)
    return {"single": single, "batched": (time.perf_counter() - start) / n}


def latency_ms(predict, items, repeats=20):
    """latency() in milliseconds, rounded for a metrics file."""
    timing = latency(predict, items, repeats)
    return {"single": round(1000 * timing["single"], 3), "batched": round(1000 * timing["batched"], 4)}


def peak_memory_mb(device):
    """Peak resident memory of this process (and of the CUDA allocator on a GPU), in MB."""
    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.startswith("cuda"):
        import torch
        peak["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return peak
