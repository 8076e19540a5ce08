"""Host functions: properties, shared data, shared queues and metrics."""
from __future__ import annotations

from . import abi, memory, properties, shared


def proxy_get_property(vm, caller, path_ptr, path_len, ret_ptr, ret_size):
    path = memory.read(vm, caller, path_ptr, path_len)
    st = vm.cur
    if st is not None:
        v = st.props.get(path) if st.props else None
        ctx = st.ctx
    else:
        v, ctx = None, None
    if v is None:
        v = properties.get(path, ctx, vm.plugin, vm.props)
    if v is None:
        return abi.NOT_FOUND
    return memory.return_bytes(vm, caller, v, ret_ptr, ret_size)


def proxy_set_property(vm, caller, path_ptr, path_len, val_ptr, val_len):
    path = memory.read(vm, caller, path_ptr, path_len)
    value = memory.read(vm, caller, val_ptr, val_len)
    st = vm.cur
    if st is None:
        vm.props[path] = value
    else:
        if st.props is None:
            st.props = {}
        st.props[path] = value
    return abi.OK


def proxy_get_shared_data(vm, caller, key_ptr, key_len, ret_ptr, ret_size, ret_cas):
    key = memory.read(vm, caller, key_ptr, key_len)
    entry = shared.get_data(vm.plugin.vm_id, key)
    if entry is None:
        return abi.NOT_FOUND
    rc = memory.return_bytes(vm, caller, entry[0], ret_ptr, ret_size)
    memory.write_u32(vm, caller, ret_cas, entry[1])
    return rc


def proxy_set_shared_data(vm, caller, key_ptr, key_len, val_ptr, val_len, cas):
    key = memory.read(vm, caller, key_ptr, key_len)
    value = memory.read(vm, caller, val_ptr, val_len)
    return shared.set_data(vm.plugin.vm_id, key, value, cas & 0xFFFFFFFF)


def proxy_register_shared_queue(vm, caller, name_ptr, name_len, ret_id):
    name = memory.read(vm, caller, name_ptr, name_len)
    qid = shared.register_queue(vm.plugin.vm_id, name, vm, vm.ROOT_ID)
    memory.write_u32(vm, caller, ret_id, qid)
    return abi.OK


def proxy_resolve_shared_queue(vm, caller, vm_id_ptr, vm_id_len, name_ptr, name_len, ret_id):
    vm_id = memory.read(vm, caller, vm_id_ptr, vm_id_len).decode("utf-8", "replace")
    name = memory.read(vm, caller, name_ptr, name_len)
    qid = shared.resolve_queue(vm_id, name)
    if qid is None:
        return abi.NOT_FOUND
    memory.write_u32(vm, caller, ret_id, qid)
    return abi.OK


def proxy_enqueue_shared_queue(vm, caller, qid, val_ptr, val_len):
    return shared.enqueue(qid & 0xFFFFFFFF, memory.read(vm, caller, val_ptr, val_len))


def proxy_dequeue_shared_queue(vm, caller, qid, ret_ptr, ret_size):
    rc, value = shared.dequeue(qid & 0xFFFFFFFF)
    if rc != abi.OK:
        return rc
    return memory.return_bytes(vm, caller, value, ret_ptr, ret_size)


def proxy_define_metric(vm, caller, kind, name_ptr, name_len, ret_id):
    if kind not in (abi.METRIC_COUNTER, abi.METRIC_GAUGE, abi.METRIC_HISTOGRAM):
        return abi.BAD_ARGUMENT
    name = memory.read(vm, caller, name_ptr, name_len).decode("utf-8", "replace")
    memory.write_u32(vm, caller, ret_id, vm.metrics.define(kind, name))
    return abi.OK


def proxy_increment_metric(vm, caller, metric_id, delta):
    return vm.metrics.increment(metric_id & 0xFFFFFFFF, delta)


def proxy_record_metric(vm, caller, metric_id, value):
    return vm.metrics.record(metric_id & 0xFFFFFFFF, value)


def proxy_get_metric(vm, caller, metric_id, ret_ptr):
    rc, value = vm.metrics.get(metric_id & 0xFFFFFFFF)
    if rc == abi.OK:
        memory.write_u64(vm, caller, ret_ptr, value)
    return rc


FUNCS = {
    "proxy_get_property": ("iiii", "i", proxy_get_property),
    "proxy_set_property": ("iiii", "i", proxy_set_property),
    "proxy_get_shared_data": ("iiiii", "i", proxy_get_shared_data),
    "proxy_set_shared_data": ("iiiii", "i", proxy_set_shared_data),
    "proxy_register_shared_queue": ("iii", "i", proxy_register_shared_queue),
    "proxy_resolve_shared_queue": ("iiiii", "i", proxy_resolve_shared_queue),
    "proxy_enqueue_shared_queue": ("iii", "i", proxy_enqueue_shared_queue),
    "proxy_dequeue_shared_queue": ("iii", "i", proxy_dequeue_shared_queue),
    "proxy_define_metric": ("iiii", "i", proxy_define_metric),
    "proxy_increment_metric": ("iI", "i", proxy_increment_metric),
    "proxy_record_metric": ("iI", "i", proxy_record_metric),
    "proxy_get_metric": ("ii", "i", proxy_get_metric),
}
