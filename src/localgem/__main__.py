from localgem.cli import main

raise SystemExit(main())
