// These tests use /proc, POSIX file modes and python3: Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
