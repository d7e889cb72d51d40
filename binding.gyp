{
  "targets": [
    {
      "target_name": "danga_socket",
      "sources": [
        "src/addon.cc",
        "src/native_util.cc",
        "src/tcp_cork.cc",
        "src/fd_poll.cc",
        "src/fd_state.cc",
        "src/loop_fds.cc",
        "src/alarm_watcher.cc",
        "src/socket_alarm.cc",
        "src/reuse_port.cc",
        "src/epoll_backend.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-fexceptions", "-pthread", "-Wall", "-Wextra"],
      "ldflags": ["-pthread"],
      "conditions": [
        ["OS=='win'", { "type": "none" }]
      ],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "CLANG_CXX_LIBRARY": "libc++",
        "MACOSX_DEPLOYMENT_TARGET": "10.15",
        "OTHER_CPLUSPLUSFLAGS": ["-Wall", "-Wextra"]
      }
    }
  ]
}
