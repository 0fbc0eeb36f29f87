from busybox as Builder
run echo lower
Cmd ["upper", "mixed"]
eNv key=value
