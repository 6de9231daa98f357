"""legion_bringup: installs launch/, config/ and urdf/ into share/legion_bringup."""
from glob import glob

from setuptools import find_packages, setup

package_name = 'legion_bringup'

# launch, config and urdf are links to the workspace's top-level folders, the single source.
setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
        ('share/' + package_name + '/urdf', glob('urdf/*')),
    ],
    install_requires=['setuptools'],
    extras_require={'test': ['pytest']},
    zip_safe=False,
    maintainer='LEGION-ROS developers',
    maintainer_email='legion-ros@users.noreply.github.com',
    description='Launch files, parameters and robot description of LEGION-ROS.',
    license='MIT',
)
