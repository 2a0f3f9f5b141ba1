"""scripts/snapshot_trt_surface.py on small pybind/C++ snippets in NVIDIA's style (the real sources are
fetched, never committed: these pin the idioms the extractor must understand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "snapshot_trt_surface.py"
spec = importlib.util.spec_from_file_location("snapshot_trt_surface", SCRIPT)
snap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(snap)

BINDINGS = r'''
// a comment with py::class_<Fake>(m, "Fake") that must be ignored
namespace lambdas {
static const auto set_shape = [](IOptimizationProfile& self, std::string const& name) { self.x(); };
}
void bindCore(py::module& m)
{
    py::class_<ILogger, PyLogger> baseLoggerBinding{m, "ILogger", ILoggerDoc::descr};
    baseLoggerBinding.def(py::init<>()).def("log", &ILogger::log, "severity"_a, "msg"_a, ILoggerDoc::log);
    py::enum_<ILogger::Severity>(baseLoggerBinding, "Severity", py::arithmetic(), SeverityDoc::descr)
        .value("ERROR", ILogger::Severity::kERROR, "doc, with a comma")
        .value("WARNING", ILogger::Severity::kWARNING)
        .export_values();
    py::class_<DefaultLogger, ILogger>(m, "Logger", LoggerDoc::descr)
        .def(py::init<ILogger::Severity>(), "min_severity"_a = ILogger::Severity::kWARNING)
        .def_readwrite("min_severity", &DefaultLogger::mMinSeverity);
    py::class_<IBuilderConfig, std::unique_ptr<IBuilderConfig, py::nodelete>>(m, "IBuilderConfig", "doc")
        .def("set_memory_pool_limit", &IBuilderConfig::setMemoryPoolLimit, "pool"_a, py::arg("pool_size"))
        .def_property_readonly("num_optimization_profiles", &IBuilderConfig::getNbOptimizationProfiles)
        .def_property("device_memory", nullptr, &lambdas::set_device_memory)
        .def("get_flag", utils::deprecate(lambdas::get_flag, "x, y"), "flag"_a)
        .def("get_flag", lambdas::get_flag_v2, "name"_a);
#if ENABLE_INETWORK_SERIALIZE
    py::class_<ISerializer>(m, "Serializer");
#else
    py::class_<IOnlyWithout>(m, "OnlyWithout");
#endif
    py::enum_<BuilderFlag>(m, "BuilderFlag", py::arithmetic{}, BuilderFlagDoc::descr)
        .value("FP16", BuilderFlag::kFP16)
        .value("STRICT_TYPES", BuilderFlag::kSTRICT_TYPES)
        .value("BIT", BuilderFlag::kBIT);
    m.attr("float32") = DataType::kFLOAT;
    m.def("init_libnvinfer_plugins", &initLibNvInferPlugins, "logger"_a, "namespace"_a, "doc");
}
'''
HEADER = '''
class ILogger { public: enum class Severity : int32_t { kINTERNAL_ERROR = 0, kERROR = 1, kWARNING = 2 }; };
enum class BuilderFlag : int32_t
{
    kFP16 = 0, //!< comment
    kSTRICT_TYPES TRT_DEPRECATED_ENUM = 4,
    kNEXT,
    kBIT = 1U << 3,
};
'''


def _surface():
    s = snap.Surface()
    s.parse(BINDINGS, "pyCore.cpp")
    return s


def test_classes_methods_kwargs_properties():
    s = _surface()
    # the commented-out class is ignored; #if ENABLE_INETWORK_SERIALIZE (off) drops Serializer
    assert set(s.classes) == {"ILogger", "Logger", "IBuilderConfig", "OnlyWithout"}
    assert set(s.enums) == {"ILogger.Severity", "BuilderFlag"}
    cfg = s.classes["IBuilderConfig"]
    assert cfg["methods"]["set_memory_pool_limit"]["kwargs"] == ["pool", "pool_size"]
    assert cfg["methods"]["get_flag"]["kwargs"] == ["flag", "name"]
    assert cfg["methods"]["get_flag"]["overloads"] == [["flag"], ["name"]]
    assert cfg["properties"]["num_optimization_profiles"] == {"readonly": True}
    assert cfg["properties"]["device_memory"] == {"readonly": False, "writeonly": True}
    assert s.classes["Logger"]["methods"]["__init__"]["kwargs"] == ["min_severity"]
    assert s.classes["Logger"]["properties"]["min_severity"] == {"readonly": False}
    assert s.classes["ILogger"]["methods"]["log"]["kwargs"] == ["severity", "msg"]
    # nested enum and export_values land on the parent class
    assert {"Severity", "ERROR", "WARNING"} <= set(s.classes["ILogger"]["properties"])
    assert s.functions["init_libnvinfer_plugins"]["kwargs"] == ["logger", "namespace"]
    assert s.module_attrs["float32"] == "DataType::kFLOAT"


def test_enum_values_from_headers():
    s = _surface()
    defs = snap.header_enums([HEADER])
    assert snap.enum_values(defs, s.enum_cpp["BuilderFlag"], s.enums["BuilderFlag"]) == \
        {"FP16": 0, "STRICT_TYPES": 4, "BIT": 8}
    assert defs["BuilderFlag"][0]["kNEXT"] == 5
    assert snap.enum_values(defs, s.enum_cpp["ILogger.Severity"], s.enums["ILogger.Severity"]) == \
        {"ERROR": 1, "WARNING": 2}
    # an enum whose header is absent (or a different enum of the same name) gives null, not a guess
    assert snap.enum_values(defs, "ErrorCode", {"SUCCESS": "ErrorCode::kSUCCESS"}) == {"SUCCESS": None}


def test_python_layer():
    s = _surface()
    snap.parse_init(s, '''
from .##TENSORRT_MODULE## import *
__version__ = "##TENSORRT_VERSION##"
Logger.Severity = ILogger.Severity
def nptype(trt_type):
    import numpy as np
    return {float32: np.float32, bool: np.bool}[trt_type]
def _itemsize(trt_type):
    return 4
ILogger.__enter__ = lambda this: this
''')
    assert s.functions["nptype"] == {"kwargs": ["trt_type"], "python": True, "numpy_attrs": ["bool", "float32"]}
    assert "_itemsize" not in s.functions and "__version__" in s.module_attrs
    assert "Logger.Severity" in s.enums and "__enter__" in s.classes["ILogger"]["methods"]
