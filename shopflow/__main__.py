from shopflow.cli import main

main()
