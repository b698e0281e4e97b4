from aedetect._entry import main

main()
