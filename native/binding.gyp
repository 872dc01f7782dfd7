{
  "targets": [
    {
      "target_name": "lockdrop",
      "sources": ["src/addon.cc", "src/rtnetlink.cc", "src/bpf_object.cc", "src/features.cc", "src/files.cc", "src/ofd_wait.cc", "src/close_batch.cc", "src/notify.cc", "src/fdstore.cc", "src/peercred.cc", "src/neighbours.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # Explicit error returns: no C++ exceptions exist in this addon (-fno-exceptions stays on),
      # so none can escape into libuv; JS errors are thrown with ThrowAsJavaScriptException().
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
      "libraries": ["-lbpf"]
    }
  ]
}
