// The suite runs on Linux (file modes, /proc, network namespaces).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
