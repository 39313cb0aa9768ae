package checkpoint

import "testing"

func benchmarkOpen(b *testing.B, name string, read bool) {
	path := realCheckpoint(b, name)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if read {
			for _, m := range f.Models {
				for _, t := range m.Tensors {
					if _, err := t.Float64s(); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		f.Close()
	}
}

func BenchmarkOpenYOLOv5(b *testing.B)     { benchmarkOpen(b, "ultralytics_yolov5n.pt", false) }
func BenchmarkOpenReadYOLOv5(b *testing.B) { benchmarkOpen(b, "ultralytics_yolov5n.pt", true) }
func BenchmarkOpenResNet20Legacy(b *testing.B) {
	benchmarkOpen(b, "akamaster_resnet20-12fca82f.th", false)
}
func BenchmarkOpenReadULFDLegacy(b *testing.B) { benchmarkOpen(b, "ulfd_version-RFB-320.pth", true) }
