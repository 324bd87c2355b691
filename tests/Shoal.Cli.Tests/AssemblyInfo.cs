// The suite runs on Linux (file modes).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
